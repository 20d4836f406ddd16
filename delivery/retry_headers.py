"""Headers a task carries through the retry tiers (all prefixed ``retry-``).

A redrive strips them (``plumbing.kafka.deadletter.redrive_record``), so a redriven task starts
a fresh ladder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ATTEMPT = "retry-attempt"
NOT_BEFORE = "retry-not-before"
ORIGINAL_TOPIC = "retry-original-topic"
ORIGINAL_PARTITION = "retry-original-partition"
ORIGINAL_OFFSET = "retry-original-offset"
LAST_ERROR = "retry-last-error"
LAST_STATUS = "retry-last-status"
# The ladder tier the task is at, when it waits on another tier's topic (a deferral parks it by
# how long it waits); absent, the topic it is read from is its tier. -1: before the first tier.
LADDER_TIER = "retry-ladder-tier"
PREFIX = "retry-"

# A header value is bounded: endpoints control error texts.
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class RetryState:
    """What earlier attempts left on a task: attempts made, due time (epoch ms), first home."""

    attempts: int = 0
    not_before_ms: int = 0
    original_topic: str | None = None
    original_partition: int = -1
    original_offset: int = -1
    last_error: str | None = None
    last_status: int = 0
    ladder_tier: int | None = None  # see LADDER_TIER; None: the topic's tier

    def headers(self) -> list[tuple[str, bytes]]:
        values = [
            (ATTEMPT, str(self.attempts)),
            (NOT_BEFORE, str(self.not_before_ms)),
            (ORIGINAL_TOPIC, self.original_topic or ""),
            (ORIGINAL_PARTITION, str(self.original_partition)),
            (ORIGINAL_OFFSET, str(self.original_offset)),
            (LAST_STATUS, str(self.last_status)),
        ]
        if self.last_error:
            values.append((LAST_ERROR, self.last_error[:_MAX_ERROR]))
        if self.ladder_tier is not None:
            values.append((LADDER_TIER, str(self.ladder_tier)))
        return [(name, value.encode()) for name, value in values]


FRESH = RetryState()  # a task no attempt was made for yet


def _text(value: bytes | str | None) -> str:
    if isinstance(value, str):
        return value
    return (value or b"").decode(errors="replace")


def parse_retry_state(
    headers: Sequence[tuple[str, bytes | str | None]] | dict[str, bytes | str | None] | None,
) -> RetryState:
    """The retry state in ``headers`` (a record's, as consumed: pairs, or a dict from some
    clients); missing or malformed values fall back to a fresh task."""
    if not headers:
        return FRESH
    if isinstance(headers, dict):
        headers = list(headers.items())
    # A first attempt's record may still carry headers (a traceparent): one pass that builds
    # nothing tells it apart, as it is read for every task.
    for name, _ in headers:
        if name.startswith(PREFIX):
            break
    else:
        return FRESH  # a first attempt, the common case
    values = {name: _text(value) for name, value in headers if name.startswith(PREFIX)}

    def number(name: str, default: int) -> int:
        try:
            return int(values[name])
        except (KeyError, ValueError):
            return default

    return RetryState(
        attempts=max(number(ATTEMPT, 0), 0),
        not_before_ms=number(NOT_BEFORE, 0),
        original_topic=values.get(ORIGINAL_TOPIC) or None,
        original_partition=number(ORIGINAL_PARTITION, -1),
        original_offset=number(ORIGINAL_OFFSET, -1),
        last_error=values.get(LAST_ERROR) or None,
        last_status=number(LAST_STATUS, 0),
        ladder_tier=number(LADDER_TIER, -1) if LADDER_TIER in values else None,
    )


def without_retry_headers(
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> list[tuple[str, bytes]]:
    """``headers`` minus the retry ones (the record's own headers survive the ladder)."""
    return [(name, value or b"") for name, value in headers or [] if not name.startswith(PREFIX)]
