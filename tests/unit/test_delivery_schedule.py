"""The retry ladder: durations, jitter bounds, tier order and Retry-After skipping."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.schedule import RetryLadder, Step, parse_duration

SVIX = ("5s", "5m", "30m", "2h", "5h", "10h")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("50ms", 0.05), ("5s", 5), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "-5s", "s", "5 minutes"])
def test_bad_duration_names_the_field(text: str) -> None:
    with pytest.raises(ValueError, match="retry_tiers"):
        parse_duration(text)


def test_ladder_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="retry_tiers"):
        RetryLadder([])
    with pytest.raises(ValueError, match="retry_tiers"):
        RetryLadder(["5m", "5s"])
    with pytest.raises(ValueError, match="jitter"):
        RetryLadder(["5s"], jitter=2)


def test_walks_the_tiers_then_stops() -> None:
    ladder = RetryLadder(SVIX, jitter=0)
    tiers = []
    current: int | None = None
    while (step := ladder.next_step(current, now=1000.0)) is not None:
        tiers.append(step.tier)
        assert step.not_before == pytest.approx(1000.0 + ladder.delays[step.tier])
        current = step.tier
    assert tiers == [0, 1, 2, 3, 4, 5]


@given(
    tier=st.integers(min_value=-1, max_value=len(SVIX) - 2),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_jitter_stays_within_bounds(tier: int, jitter: float, seed: int) -> None:
    ladder = RetryLadder(SVIX, jitter=jitter)
    step = ladder.next_step(None if tier < 0 else tier, now=0.0, rng=random.Random(seed))
    assert step is not None
    low, high = ladder.delay_bounds(step.tier)
    assert low == ladder.delays[tier + 1]
    assert low <= step.not_before <= high + 1e-9


def test_jitter_spreads_a_burst() -> None:
    ladder = RetryLadder(SVIX, jitter=0.5)
    rng = random.Random(1)
    dues = {ladder.next_step(None, 0.0, rng=rng).not_before for _ in range(50)}  # type: ignore[union-attr]
    assert len(dues) > 40


def test_retry_after_skips_to_a_long_enough_tier() -> None:
    ladder = RetryLadder(SVIX, jitter=0)
    step = ladder.next_step(None, now=0.0, retry_after=600)
    assert step is not None and step.tier == 2  # 30m is the first tier >= 10 minutes
    step = ladder.next_step(None, now=0.0, retry_after=2)
    assert step is not None and step.tier == 0
    assert step.not_before == 5


def test_retry_after_longer_than_every_tier_waits_in_the_last() -> None:
    ladder = RetryLadder(("50ms", "200ms"), jitter=0)
    step = ladder.next_step(None, now=0.0, retry_after=3)
    assert step is not None and step.tier == 1 and step.not_before == 3
    assert ladder.next_step(1, now=0.0, retry_after=3) is None


def test_the_ladder_parks_a_long_wait_on_the_longest_tier_within_it() -> None:
    ladder = RetryLadder(("5s", "5m", "30m"), jitter=0.0)
    # Shorter than the first tier: there, due at the end of the wait.
    assert ladder.parking(1000.0 + 2, 1000.0) == Step(0, 1000.0 + 2)
    # Longer: the longest tier within it, due after that tier's own delay (it comes back
    # early and is parked again), so it never holds up the records behind it on that tier.
    assert ladder.parking(1000.0 + 30, 1000.0) == Step(0, 1000.0 + 5)
    assert ladder.parking(1000.0 + 600, 1000.0) == Step(1, 1000.0 + 300)
    assert ladder.parking(1000.0 + 86400, 1000.0) == Step(2, 1000.0 + 1800)
    assert ladder.parking(1000.0 - 1, 1000.0) == Step(0, 1000.0), "overdue: at once"


@given(
    wait=st.floats(min_value=0, max_value=100_000),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(0, 2**32),
)
def test_a_parked_task_never_holds_up_its_tier_nor_comes_back_late(
    wait: float, jitter: float, seed: int
) -> None:
    """Due no later than a task entering the same tier now would be (the tier topic is read in
    order), and no later than the end of the wait plus its jitter."""
    ladder = RetryLadder(SVIX, jitter=jitter)
    now = 1000.0
    step = ladder.parking(now + wait, now, random.Random(seed))
    low, high = ladder.delay_bounds(step.tier)
    assert step.not_before <= now + high + 1e-6
    assert step.not_before <= now + wait * (1 + jitter) + 1e-6
    assert step.not_before >= now + min(wait, low) - 1e-6
