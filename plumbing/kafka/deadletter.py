"""Dead-letter records: the original key and value, untouched, with headers that say why.

Every dead-letter topic (undecodable events, failed handlers, exhausted deliveries) uses the
same headers so one tool can list, show and redrive them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message

REASON = "dlt-reason"
ORIGINAL_TOPIC = "dlt-original-topic"
ORIGINAL_PARTITION = "dlt-original-partition"
ORIGINAL_OFFSET = "dlt-original-offset"
ORIGINAL_TIMESTAMP = "dlt-original-timestamp"
FAILED_AT = "dlt-failed-at"
SOURCE = "dlt-source"

HeaderList = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """What a dead-letter record says about the record it parks."""

    reason: str
    original_topic: str
    original_partition: int
    original_offset: int
    source: str
    extra: Mapping[str, str]


def dead_letter_headers(
    message: Message,
    reason: str,
    source: str,
    failed_at_ms: int,
    extra: Mapping[str, str] | None = None,
) -> HeaderList:
    """Headers for parking ``message``: its coordinates, the reason and the component (source).

    The message's own headers are kept (minus earlier dead-letter headers) so a redrive restores
    it as it was.
    """
    kept = [
        (key, value.encode() if isinstance(value, str) else value or b"")
        for key, value in _header_pairs(message)
        if not key.startswith("dlt-")
    ]
    _, timestamp = message.timestamp()
    headers: HeaderList = [
        *kept,
        (REASON, reason.encode()),
        (ORIGINAL_TOPIC, (message.topic() or "").encode()),
        (ORIGINAL_PARTITION, str(message.partition()).encode()),
        (ORIGINAL_OFFSET, str(message.offset()).encode()),
        (ORIGINAL_TIMESTAMP, str(timestamp).encode()),
        (FAILED_AT, str(failed_at_ms).encode()),
        (SOURCE, source.encode()),
    ]
    headers.extend((f"dlt-{key}", value.encode()) for key, value in (extra or {}).items())
    return headers


def _header_pairs(message: Message) -> list[tuple[str, str | bytes | None]]:
    headers = message.headers() or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def header_map(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as text; the last value wins when a name repeats."""
    return {key: (value or b"").decode(errors="replace") for key, value in headers or []}


def parse_dead_letter(headers: Sequence[tuple[str, bytes | None]] | None) -> DeadLetter:
    """Read the dead-letter headers of a record from a dead-letter topic."""
    values = header_map(headers)
    known = {REASON, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET, SOURCE}
    return DeadLetter(
        reason=values.get(REASON, ""),
        original_topic=values.get(ORIGINAL_TOPIC, ""),
        original_partition=int(values.get(ORIGINAL_PARTITION, "-1")),
        original_offset=int(values.get(ORIGINAL_OFFSET, "-1")),
        source=values.get(SOURCE, ""),
        extra={
            key.removeprefix("dlt-"): value
            for key, value in values.items()
            if key.startswith("dlt-") and key not in known
        },
    )


# Headers a redrive removes: the dead-letter ones and any retry bookkeeping (``retry-*``), so the
# record starts over as if it were new.
REDRIVE_STRIPPED_PREFIXES: tuple[str, ...] = ("dlt-", "retry-")


@dataclass(frozen=True)
class Redrive:
    """A record to produce to send a dead letter back for another try."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList


def redrive_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    topic: str | None = None,
    strip_prefixes: Sequence[str] = REDRIVE_STRIPPED_PREFIXES,
) -> Redrive:
    """What to produce to redrive a dead-letter record with ``key``, ``value`` and ``headers``.

    The key and value are returned untouched. ``topic`` defaults to the record's original
    topic (``dlt-original-topic``); callers whose retries start elsewhere pass their own (the
    delivery worker's redrive targets the first retry tier). Headers whose name starts with one
    of ``strip_prefixes`` are dropped, the others kept in order. Raises ValueError if no topic
    is given and the record does not name its original topic.
    """
    target = topic or parse_dead_letter(headers).original_topic
    if not target:
        raise ValueError(f"topic: none given and the record has no {ORIGINAL_TOPIC} header")
    kept = [
        (name, value_ or b"")
        for name, value_ in headers or []
        if not name.startswith(tuple(strip_prefixes))
    ]
    return Redrive(topic=target, key=key, value=value, headers=kept)


def message_headers(message: Message) -> HeaderList:
    """A consumed message's headers as a list of (name, bytes) pairs."""
    return [
        (key, value.encode() if isinstance(value, str) else value or b"")
        for key, value in _header_pairs(message)
    ]
