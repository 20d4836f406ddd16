"""Per-webhook rate limits (``"rate_limit": {"per_second": r, "burst": b}``): a token bucket
with reservations. Pure: the caller passes the clock, so unit tests use a fake one.

A send *reserves* a token right before it goes and learns when it may: now while tokens are
left, else the moment the bucket will have refilled one for it (tokens may go negative: each
reservation waits for those before it). So however many runners share the bucket, sends leave
at most ``burst`` at once and ``per_second`` on average, in reservation order; a runner that
comes late (a busy event loop) finds at most ``burst`` tokens, never a backlog of turns.
Tasks waiting in the lane for their reservation are counted (``held``), so the lane can tell
how far off a new task's turn is before deciding to hold or park it.

Across delivery workers the limit holds per webhook because a webhook's tasks all reach one
worker: every topic a task travels on (``deliveries`` and each retry tier) is keyed by webhook
id with the same partition count, and the consumer group's range assignor gives partition ``p``
of every topic to the same member (co-partitioning). So one bucket per webhook, on the worker
owning its partition, paces fresh tasks, retries, redrives and redeliveries together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`reserve` takes one."""

    rate: float
    burst: int
    tokens: float
    at: float  # when ``tokens`` was computed (the caller's clock, seconds)
    # Deferred sends are given return times from here on, one slot apart, so a parked burst
    # comes back spread at the rate rather than all at once.
    deferral_cursor: float = 0.0
    held: int = 0  # sends waiting in a lane to reserve their turn

    def turn_in(self, now: float) -> float:
        """Seconds from ``now`` until a send queued now, behind the held ones, could go."""
        self._refill(now)
        return max(0.0, (self.held + 1 - self.tokens) / self.rate)

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        """A bucket with every token available at ``now``."""
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        return cls(rate, burst, float(burst), now)

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
            self.at = now

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until a reservation made now could be sent (0: at once)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def reserve(self, now: float) -> float:
        """Take a token: the time (>= ``now``) at which the send it allows may go."""
        self._refill(now)
        self.tokens -= 1
        if self.tokens >= 0:
            return now
        return now + (-self.tokens) / self.rate

    def defer_slot(self, now: float, earliest: float) -> float:
        """A return time, no earlier than ``earliest``, for a send deferred instead of reserved;
        successive calls are one slot (1 / rate) apart."""
        slot = max(self.deferral_cursor, earliest)
        self.deferral_cursor = slot + 1 / self.rate
        return slot
