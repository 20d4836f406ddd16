"""What an attempt's result means: done, try again later, dead-letter, or disable the webhook."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

# Statuses that say "not now" rather than "never": request timeout, too early, rate limited.
RETRYABLE_4XX = frozenset({408, 425, 429})


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    GONE = "gone"  # 410: the endpoint says it will never come back; disable the webhook


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one attempt, why, and how long the endpoint asked us to wait (if it did)."""

    verdict: Verdict
    reason: str
    retry_after: float | None = None


def classify_status(status: int, retry_after: str | None = None, cap: float = 3600.0) -> Outcome:
    """Classify an HTTP response status (with its ``Retry-After`` header, if any)."""
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, f"HTTP {status}")
    if status == 410:
        return Outcome(Verdict.GONE, "HTTP 410 Gone: the endpoint asked to be removed")
    if status in RETRYABLE_4XX or 500 <= status < 600:
        return Outcome(Verdict.RETRY, f"HTTP {status}", parse_retry_after(retry_after, cap))
    if 300 <= status < 400:
        return Outcome(Verdict.DEAD_LETTER, f"HTTP {status}: redirects are not followed")
    return Outcome(Verdict.DEAD_LETTER, f"HTTP {status}")


def classify_error(error: BaseException) -> Outcome:
    """Classify an attempt that got no response: timeouts and connection errors are retried."""
    name = type(error).__name__
    detail = str(error) or name
    return Outcome(Verdict.RETRY, f"{name}: {detail}")


def parse_retry_after(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date), capped.

    Unparseable values are ignored (None): a broken header must not stop retries.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)
