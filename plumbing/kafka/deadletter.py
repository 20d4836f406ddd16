"""Dead-letter records: the original key and value, untouched, with headers that say why.

Every dead-letter topic (undecodable events, failed handlers, exhausted deliveries) uses the
same headers so one tool can list, show and redrive them all, and one scan
(:func:`present_records`) reads them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from plumbing.kafka.clients import consume_available, consumer_config
from plumbing.kafka.produce import Record, message_headers
from plumbing.settings import Settings

__all__ = [
    "FAILED_AT",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TOPIC",
    "REASON",
    "REDRIVE_STRIPPED_PREFIXES",
    "SOURCE",
    "DeadLetter",
    "dead_letter_headers",
    "header_map",
    "message_headers",
    "parse_dead_letter",
    "present_records",
    "redrive_record",
]

REASON = "dlt-reason"
ORIGINAL_TOPIC = "dlt-original-topic"
ORIGINAL_PARTITION = "dlt-original-partition"
ORIGINAL_OFFSET = "dlt-original-offset"
ORIGINAL_TIMESTAMP = "dlt-original-timestamp"
FAILED_AT = "dlt-failed-at"
SOURCE = "dlt-source"


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
) -> list[tuple[str, bytes]]:
    """Headers for parking ``message``: its coordinates, the reason and the component (source).

    The message's own headers are kept (minus earlier dead-letter headers) so a redrive restores
    it as it was.
    """
    kept = [(key, value) for key, value in message_headers(message) if not key.startswith("dlt-")]
    _, timestamp = message.timestamp()
    headers = [
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


def redrive_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    topic: str | None = None,
    strip_prefixes: Sequence[str] = REDRIVE_STRIPPED_PREFIXES,
) -> Record:
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
    return Record(target, key, value, kept)


# How long one wait for fetched records lasts before the scan checks positions again (seconds).
_SCAN_POLL = 1.0


def present_records(
    settings: Settings, topic: str, timeout: float = 30.0, group_prefix: str = "dlt-scan"
) -> Iterator[Message]:
    """Every record of ``topic`` present now: from the beginning of each partition up to its end
    as of this call (records written meanwhile are left out), in offset order per partition.

    Empty partitions are not read at all. A partition is finished at its end offset, at its
    end-of-partition event, or once the consumer's position reached the end: transaction
    markers or compaction can leave the last offsets without a record to return. Raises
    TimeoutError if ``timeout`` seconds pass without any progress. The consumer belongs to no
    group (``group_prefix`` only names it) and commits nothing.
    """
    consumer = Consumer(
        consumer_config(
            settings, f"{group_prefix}-{uuid.uuid4().hex}", **{"enable.partition.eof": True}
        )
    )
    try:
        ends = _end_offsets(consumer, topic, timeout)
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(ends)])
        unfinished = dict(ends)
        progress_at = time.monotonic()
        while unfinished:
            # Progress is a record or a finished partition; error events (a broker away) are
            # not, so an unreachable cluster ends in TimeoutError rather than an endless scan.
            progressed = len(unfinished)
            for message in consume_available(consumer, 500, min(_SCAN_POLL, timeout)):
                if _is_present(message, ends, unfinished):
                    progressed = -1
                    yield message
            _drop_finished(consumer, topic, unfinished)
            now = time.monotonic()
            if progressed != len(unfinished):
                progress_at = now
            elif now - progress_at > timeout:
                raise TimeoutError(f"{topic}: no record within {timeout}s (still {unfinished})")
    finally:
        consumer.close()


def _end_offsets(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    # The end of every partition that holds anything now (high watermark above the low one).
    metadata = consumer.list_topics(topic, timeout=timeout)
    ends: dict[int, int] = {}
    for partition in sorted(metadata.topics[topic].partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout
        )
        if high > low:
            ends[partition] = high
    return ends


def _is_present(message: Message, ends: dict[int, int], unfinished: dict[int, int]) -> bool:
    # Whether ``message`` is a record from before the scan began; updates what is finished.
    partition = message.partition() or 0
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            unfinished.pop(partition, None)
        return False  # other errors are transient: the consumer retries on its own
    offset = message.offset() or 0
    if offset + 1 >= ends.get(partition, 0):
        unfinished.pop(partition, None)
    return offset < ends.get(partition, 0)


def _drop_finished(consumer: Consumer, topic: str, unfinished: dict[int, int]) -> None:
    # Transaction markers or compaction can leave the last offsets without a record.
    if not unfinished:
        return
    for tp in consumer.position([TopicPartition(topic, p) for p in list(unfinished)]):
        if tp.partition is not None and tp.offset >= unfinished.get(tp.partition, 0):
            unfinished.pop(tp.partition, None)
