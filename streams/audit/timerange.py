"""The ``--since``/``--until`` window of a replay: RFC 3339 instants or durations before now."""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.errors import ContractError
from schemas.timestamps import parse_rfc3339

_RELATIVE = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str, field: str) -> int:
    """``15m`` → 900000. Units: ms, s, m, h, d, w; a ContractError naming ``field`` otherwise."""
    match = _RELATIVE.match(text.strip())
    if match is None:
        raise ContractError(field, f"must be a duration like 30s, 15m, 2h or 1d, got {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_instant_ms(text: str, field: str, now_ms: int) -> int:
    """Epoch milliseconds of ``text``: ``now``, an RFC 3339 timestamp, or a duration ago.

    Kafka record timestamps are milliseconds, so sub-millisecond digits are truncated.
    """
    value = text.strip()
    if value == "now":
        return now_ms
    if _RELATIVE.match(value):
        return now_ms - parse_duration_ms(value, field)
    if value[:1].isdigit() and "T" in value.upper():
        moment = parse_rfc3339(value, field)
        return int(moment.timestamp()) * 1000 + moment.microsecond // 1000
    raise ContractError(
        field, f"must be an RFC 3339 timestamp or a duration like 2h or 15m, got {text!r}"
    )


@dataclass(frozen=True)
class TimeRange:
    """Record timestamps ``since_ms <= t < until_ms``; ``None`` leaves that side open."""

    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.until_ms <= self.since_ms
        ):
            raise ContractError("until", "must be later than --since")

    def contains(self, timestamp_ms: int) -> bool:
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms


def parse_range(since: str | None, until: str | None, now_ms: int) -> TimeRange:
    """The window of ``--since``/``--until``, both relative to the same ``now_ms``."""
    return TimeRange(
        since_ms=None if since is None else parse_instant_ms(since, "since", now_ms),
        until_ms=None if until is None else parse_instant_ms(until, "until", now_ms),
    )
