"""UTC timestamps at microsecond precision, in Go's RFC 3339 form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from schemas.errors import ContractError

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_epoch_micros(micros: int) -> datetime:
    """The UTC time ``micros`` microseconds after the epoch (Avro's timestamp-micros)."""
    return _EPOCH + timedelta(microseconds=micros)


def to_epoch_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (Avro's timestamp-micros)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def utc_now() -> datetime:
    """Now, in UTC, truncated to microseconds (what Avro timestamp-micros keeps)."""
    return datetime.now(UTC)


def to_utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused because their zone is a guess."""
    if not isinstance(value, datetime):
        raise ContractError(field, "must be a datetime")
    if value.tzinfo is None:
        raise ContractError(field, "must be timezone-aware (naive datetimes are ambiguous)")
    return value.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    """Go's ``time.Time`` JSON form: RFC 3339, trailing fractional zeros dropped, ``Z`` for UTC."""
    v = value if value.tzinfo is UTC else value.astimezone(UTC)
    # isoformat (C) writes "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00" with a zero-padded year; the
    # fraction appears only when non-zero, so trimming its zeros never reaches the dot.
    text = datetime.isoformat(v)
    return (text[:26].rstrip("0") if v.microsecond else text[:19]) + "Z"


def parse_rfc3339(text: str, field: str) -> datetime:
    """Parse RFC 3339 (as Go writes it, up to nanoseconds); sub-microsecond digits are dropped."""
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        raise ContractError(field, f"must be an RFC 3339 timestamp, got {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
    except ValueError as exc:
        raise ContractError(field, f"is not a valid date/time ({exc})") from None
    return parsed.astimezone(UTC)
