"""The retry ladder: fixed-delay tiers (one Kafka topic each), jitter, and which tier comes next."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, field: str = "retry_tiers") -> float:
    """Seconds in ``"50ms"``, ``"5s"``, ``"5m"``, ``"2h"`` or ``"1d"``."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{field}: {text!r} is not a duration like 50ms, 5s, 5m, 2h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Step:
    """Where a failed task goes: tier index ``tier`` and its due time ``not_before`` (epoch s)."""

    tier: int
    not_before: float


class RetryLadder:
    """The tiers in order. A task in tier ``i`` that fails again moves to tier ``i + 1``.

    ``jitter`` stretches a delay by a random fraction in ``[0, jitter]`` (never shortens it, so a
    retry is never earlier than its tier promises) and spreads out retries of a burst.
    """

    def __init__(self, tiers: Sequence[str], jitter: float = 0.1) -> None:
        if not tiers:
            raise ValueError("retry_tiers: at least one tier is required")
        if not 0 <= jitter <= 1:
            raise ValueError("delivery_jitter: must be between 0 and 1")
        self.names = tuple(tiers)
        self.delays = tuple(parse_duration(tier) for tier in tiers)
        if any(b < a for a, b in zip(self.delays, self.delays[1:], strict=False)):
            raise ValueError("retry_tiers: delays must not decrease")
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.names)

    def delay_bounds(self, tier: int) -> tuple[float, float]:
        """Shortest and longest jittered delay of ``tier``."""
        delay = self.delays[tier]
        return delay, delay * (1 + self.jitter)

    def next_step(
        self,
        current_tier: int | None,
        now: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> Step | None:
        """The tier after ``current_tier`` (None: a fresh task, so the first tier), or None when
        the ladder is done.

        A ``retry_after`` longer than the next tier's delay skips ahead to the first tier that
        is at least that long (or the last one); the due time is never before ``retry_after``.
        """
        tier = 0 if current_tier is None else current_tier + 1
        if tier >= len(self.delays):
            return None
        if retry_after is not None:
            while tier < len(self.delays) - 1 and self.delays[tier] < retry_after:
                tier += 1
        return self.step_in(tier, now, retry_after, rng)

    def step_in(
        self,
        tier: int,
        now: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> Step:
        """A jittered due time in ``tier`` itself, never before ``retry_after``."""
        low, high = self.delay_bounds(tier)
        delay = (rng or random).uniform(low, high)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return Step(tier, now + delay)

    def parking(self, until: float, now: float, rng: random.Random | None = None) -> Step:
        """Where a task waits until ``until`` (epoch s) without sending it: a deferral.

        A tier topic is read in order, so a record due later than the ones produced after it
        would hold them up (other endpoints' retries among them), and one due earlier still
        waits for those before it, up to a whole delay of the tier. So the task goes to the
        longest tier no longer than the wait, due after that tier's own delay (it comes back,
        still early, and is parked again for what is left); a wait shorter than the first tier
        is spent in the first tier, due at ``until``. Coming back costs a record or two; a
        longer tier than the wait would cost up to its delay in latency once the endpoint is
        back (5 minutes for a 30-second wait with the default ladder). The jitter spreads the
        returns of a parked burst, so the first few back find the endpoint's trials free.
        """
        until = max(until, now)
        wait = until - now
        tier = 0
        for index, delay in enumerate(self.delays):
            if delay > wait:
                break
            tier = index
        delay = self.delays[tier]
        spread = (rng or random).uniform(0.0, self.jitter)
        if delay > wait:
            return Step(tier, until + wait * spread)
        return Step(tier, now + delay * (1 + spread))
