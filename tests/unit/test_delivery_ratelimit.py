"""Per-webhook rate limits: the token bucket on a fake clock, and the lanes pacing a limited
webhook's sends (held or parked, never counted) while other endpoints go at once."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from delivery.config import DeliveryConfig
from delivery.lanes import Job, Lanes
from delivery.ratelimit import TokenBucket
from delivery.sender import endpoint_key
from delivery.transport import AttemptResult, MockTransport
from schemas.webhook import RateLimit, Webhook
from tests.unit.test_delivery_lanes import make_job, make_webhook, ok


def test_a_full_bucket_allows_the_burst_then_one_per_slot() -> None:
    bucket = TokenBucket.full(rate=10, burst=3, now=100.0)
    assert [bucket.reserve(100.0) for _ in range(3)] == [100.0] * 3
    assert bucket.reserve(100.0) == pytest.approx(100.1)
    assert bucket.reserve(100.0) == pytest.approx(100.2)
    assert bucket.delay(100.0) == pytest.approx(0.3)
    # Time refills what the reservations took, never beyond the burst.
    assert bucket.delay(100.3) == pytest.approx(0.0, abs=1e-9)
    bucket.reserve(100.3)
    assert bucket.delay(1000.0) == 0.0
    assert bucket.tokens == 3
    assert [bucket.reserve(1000.0) for _ in range(4)][-1] == pytest.approx(1000.1)


def test_the_average_rate_holds_whatever_the_callers_timing() -> None:
    bucket = TokenBucket.full(rate=20, burst=20, now=0.0)
    now, sends = 0.0, []
    for step in range(600):
        now = step * 0.013  # callers arriving faster than the rate
        sends.append(bucket.reserve(now))
    assert sends == sorted(sends)
    span = sends[-1] - sends[0]
    assert (len(sends) - 20) / span == pytest.approx(20, rel=0.01)


def test_held_sends_push_back_the_next_turn() -> None:
    bucket = TokenBucket.full(rate=10, burst=2, now=0.0)
    assert bucket.turn_in(0.0) == 0.0
    bucket.held = 2
    assert bucket.turn_in(0.0) == pytest.approx(0.1)
    bucket.held = 5
    assert bucket.turn_in(0.0) == pytest.approx(0.4)
    # The held ones reserve when their runners reach them; until then they stay ahead.
    for _ in range(5):
        bucket.held -= 1
        bucket.reserve(0.0)
    assert bucket.turn_in(0.0) == pytest.approx(0.4)
    assert bucket.turn_in(0.4) == pytest.approx(0.0)


def test_deferred_returns_are_spread_one_slot_apart() -> None:
    bucket = TokenBucket.full(rate=4, burst=1, now=0.0)
    assert [bucket.defer_slot(0.0, 5.0) for _ in range(3)] == [5.0, 5.25, 5.5]
    assert bucket.defer_slot(0.0, 9.0) == 9.0


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket.full(0, 1, 0.0)
    with pytest.raises(ValueError):
        TokenBucket.full(1, 0, 0.0)


class PacedHarness:
    def __init__(self, **config: Any) -> None:
        self.sent: list[tuple[str, float]] = []
        self.deferred: list[tuple[Job, float, str | None]] = []
        self.webhooks: dict[str, Webhook] = {}
        self.runners: set[asyncio.Task[None]] = set()

        async def handler(url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
            self.sent.append((url, time.monotonic()))
            return ok()

        def defer(job: Job, until: float, reason: str | None = None) -> None:
            self.deferred.append((job, until, reason))

        self.lanes = Lanes(
            DeliveryConfig(**config),
            MockTransport(handler),
            self,
            clock=time.time,
            spawn=lambda coro: self.runners.add(asyncio.create_task(coro)),
            drop=lambda job, webhook: None,
            defer=defer,
            fail=lambda exc: None,
        )

    def get(self, webhook_id: str) -> Webhook | None:
        return self.webhooks.get(webhook_id)

    def queue(self, job: Job) -> None:
        assert job.webhook is not None
        self.webhooks.setdefault(job.webhook.id, job.webhook)
        assert self.lanes.queue(endpoint_key(job.webhook.url), job)


async def test_lanes_pace_a_limited_webhook_and_leave_others_alone() -> None:
    harness = PacedHarness(per_endpoint_limit=8, rate_limit_hold=5.0)
    limited = make_webhook("https://limited.example/h").updated(rate_limit=RateLimit(50, 2))
    free = make_webhook("https://free.example/h")
    started = time.monotonic()
    for n in range(10):
        harness.queue(make_job(limited, n))
        harness.queue(make_job(free, n))
    await asyncio.wait_for(asyncio.gather(*harness.runners), 5)
    limited_at = [at - started for url, at in harness.sent if "limited" in url]
    free_at = [at - started for url, at in harness.sent if "free" in url]
    assert len(limited_at) == len(free_at) == 10
    assert max(free_at) < 0.1  # unaffected by the other webhook's limit
    # 2 at once, then one per 20 ms: the tenth about 160 ms in.
    assert limited_at[-1] == pytest.approx(0.16, abs=0.05)
    gaps = [b - a for a, b in itertools.pairwise(limited_at[2:])]
    assert min(gaps) > 0.01
    assert len(harness.lanes.attempted) == 20  # one attempt per send, none for waiting
    assert not harness.deferred


async def test_a_turn_too_far_off_parks_the_job_uncounted() -> None:
    harness = PacedHarness(per_endpoint_limit=8, rate_limit_hold=0.1)
    limited = make_webhook("https://limited.example/h").updated(rate_limit=RateLimit(10, 1))
    jobs = [make_job(limited, n) for n in range(6)]
    for job in jobs:
        harness.queue(job)
    await asyncio.wait_for(asyncio.gather(*harness.runners), 5)
    # Held: the burst and what is due within the hold (0.1 s at 10/s); the rest parked.
    assert len(harness.sent) == 2
    parked = harness.deferred
    assert [job for job, _, _ in parked] == jobs[2:]
    untils = [until for _, until, _ in parked]
    assert untils == sorted(untils)
    assert min(b - a for a, b in itertools.pairwise(untils)) == pytest.approx(0.1)
    assert all(reason and "rate limit" in reason for _, _, reason in parked)
    assert len(harness.lanes.attempted) == 2
