"""Endpoint health: a circuit breaker per endpoint and the auto-disable clock per webhook.

Pure state machines with the clock passed in, so they are tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False


class CircuitBreakers:
    """One breaker per endpoint key: ``threshold`` consecutive failures open it; while open,
    attempts fail fast; after ``cooldown`` seconds one trial attempt is let through (half-open),
    whose success closes it and whose failure reopens it."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._breakers: dict[str, _Breaker] = {}

    def state(self, key: str, now: float) -> BreakerState:
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return BreakerState.CLOSED
        if now - breaker.opened_at < self.cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, key: str, now: float) -> bool:
        """May an attempt go to ``key`` now? (Claims the single trial when half-open.)"""
        state = self.state(key, now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        breaker = self._breakers[key]
        if breaker.trial_in_flight:
            return False
        breaker.trial_in_flight = True
        return True

    def record(self, key: str, success: bool, now: float) -> None:
        if success:
            self._breakers.pop(key, None)  # closed again (or never opened): forget it
            return
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.trial_in_flight = False
        breaker.failures += 1
        if breaker.opened_at is not None or breaker.failures >= self.threshold:
            breaker.opened_at = now


class FailureWindows:
    """Per webhook, when its current run of failures began; ``expired`` once it lasted
    ``window`` seconds without a success (0 disables the rule)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._since: dict[str, float] = {}

    def record(self, webhook_id: str, success: bool, now: float) -> bool:
        """Note an attempt's result; True if the webhook should now be disabled."""
        if success:
            self._since.pop(webhook_id, None)
            return False
        since = self._since.setdefault(webhook_id, now)
        if self.window > 0 and now - since >= self.window:
            self._since.pop(webhook_id, None)
            return True
        return False
