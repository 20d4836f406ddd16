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
    failures: int = 0  # consecutive, while closed
    opened_at: float | None = None
    cooldown: float = 0.0  # of the current opening
    trials: int = 0  # trials let through since it half-opened


class CircuitBreakers:
    """One breaker per endpoint key.

    ``threshold`` consecutive failures open it; while open, nothing is sent (the caller defers
    its tasks until :meth:`next_trial`); after the cooldown it half-opens and lets ``trials``
    attempts through. A success closes it; a failed trial reopens it with the cooldown doubled,
    up to ``max_cooldown`` (Envoy's outlier ejection grows the same way), so tasks parked for a
    long outage come back ever less often instead of every ``cooldown`` seconds.
    """

    def __init__(
        self, threshold: int, cooldown: float, trials: int = 1, max_cooldown: float = 0.0
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.trials = max(trials, 1)
        self.max_cooldown = max(max_cooldown, cooldown)
        self._breakers: dict[str, _Breaker] = {}

    def state(self, key: str, now: float) -> BreakerState:
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return BreakerState.CLOSED
        if now - breaker.opened_at < breaker.cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, key: str, now: float) -> bool:
        """May an attempt go to ``key`` now? (Claims one of the trials when half-open.)"""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return True  # closed: the common case, one dict lookup
        if now - breaker.opened_at < breaker.cooldown or breaker.trials >= self.trials:
            return False
        breaker.trials += 1
        return True

    def next_trial(self, key: str, now: float) -> float:
        """When a task refused by :meth:`allow` at ``now`` should come back (epoch s): the end
        of the cooldown while open; while the trials are out, one base cooldown later (their
        outcome is known by then, the attempt timeout being shorter)."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return now
        reopens = breaker.opened_at + breaker.cooldown
        return reopens if reopens > now else now + self.cooldown

    def record(self, key: str, success: bool, now: float) -> BreakerState | None:
        """Note an attempt's result; the breaker's new state if this changed it."""
        if success:
            # Closed again (or never opened): forget it.
            breaker = self._breakers.pop(key, None)
            if breaker is not None and breaker.opened_at is not None:
                return BreakerState.CLOSED
            return None
        breaker = self._breakers.setdefault(key, _Breaker())
        state = self.state(key, now)
        if state is BreakerState.HALF_OPEN:
            # A trial failed: open again, for twice as long (a late failure of an attempt
            # sent before the breaker opened counts the same).
            breaker.cooldown = min(breaker.cooldown * 2, self.max_cooldown)
            breaker.opened_at, breaker.trials = now, 0
            return BreakerState.OPEN
        if state is BreakerState.OPEN:
            return None  # attempts sent before it opened, failing late: nothing new
        breaker.failures += 1
        if breaker.failures >= self.threshold:
            breaker.opened_at, breaker.cooldown, breaker.trials = now, self.cooldown, 0
            return BreakerState.OPEN
        return None


class FailureWindows:
    """Per webhook, when its current run of failures began; ``expired`` once it lasted
    ``window`` seconds without a success (0 disables the rule).

    An expired window stays so (every later failure answers True) until a success or
    :meth:`forget`: the caller forgets it once the webhook is disabled, and keeps it when it
    could not disable it yet (the webhook changed meanwhile), so the next failure decides again.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._since: dict[str, float] = {}

    def record(self, webhook_id: str, success: bool, now: float) -> bool:
        """Note an attempt's result; True if the webhook should now be disabled."""
        if success:
            self._since.pop(webhook_id, None)
            return False
        since = self._since.setdefault(webhook_id, now)
        return self.window > 0 and now - since >= self.window

    def forget(self, webhook_id: str) -> None:
        """Start the webhook's window afresh (it was disabled)."""
        self._since.pop(webhook_id, None)
