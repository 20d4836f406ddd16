"""Lanes without sockets: per-endpoint concurrency, the breaker, deferring a hanging endpoint,
and dropping a task whose webhook went away, through a MockTransport."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry import trace

from delivery.config import DeliveryConfig
from delivery.lanes import Job, Lanes
from delivery.outcome import classify_status
from delivery.sender import endpoint_key
from delivery.trace import finish_attempt_spans
from delivery.transport import AttemptResult, Handler, MockTransport
from plumbing import tracing
from schemas import ids
from schemas.secrets import generate_secret
from schemas.webhook import Webhook
from tests.fixtures_delivery import make_job as lane_job
from tests.fixtures_tracing import KeepSpans

SECRET = generate_secret()


def ok(status: int = 200) -> AttemptResult:
    return AttemptResult(status, classify_status(status), 1.0)


def make_webhook(url: str) -> Webhook:
    return Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="ten_test", url=url)


def make_job(webhook: Webhook, n: int) -> Job:
    return lane_job(webhook, n, secrets=(SECRET,))


class Harness:
    """Lanes over a MockTransport, with the webhooks they check and what they report."""

    def __init__(
        self, handler: Handler, clock: Callable[[], float] = lambda: 1000.0, **config: Any
    ) -> None:
        self.webhooks: dict[str, Webhook] = {}
        self.dropped: list[tuple[Job, Webhook | None]] = []
        self.deferred: list[tuple[Job, float]] = []
        self.failures: list[BaseException] = []
        self.runners: set[asyncio.Task[None]] = set()
        self.lanes = Lanes(
            DeliveryConfig(**config),
            MockTransport(handler),
            self,
            clock=clock,
            spawn=self.spawn,
            drop=lambda job, webhook: self.dropped.append((job, webhook)),
            defer=lambda job, until: self.deferred.append((job, until)),
            fail=self.failures.append,
        )

    def get(self, webhook_id: str) -> Webhook | None:
        return self.webhooks.get(webhook_id)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.runners.add(asyncio.create_task(coro))

    def queue(self, job: Job) -> bool:
        assert job.webhook is not None
        self.webhooks.setdefault(job.webhook.id, job.webhook)
        endpoint = endpoint_key(job.webhook.url)
        return self.lanes.queue(endpoint, job)

    async def finish(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.runners), 5)
        assert not self.failures

    def statuses(self) -> list[int]:
        return [result.status for _, result in self.lanes.attempted]


class Gate:
    """An async handler that holds every request until opened, counting those in flight."""

    def __init__(self, answer: Callable[[str], AttemptResult] = lambda _url: ok()) -> None:
        self.open = asyncio.Event()
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.posted: list[tuple[str, bytes, Mapping[str, str]]] = []
        self._answer = answer

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Awaitable[AttemptResult]:
        self.posted.append((url, body, headers))
        return self._hold(url)

    async def _hold(self, url: str) -> AttemptResult:
        endpoint = endpoint_key(url)
        self.in_flight[endpoint] += 1
        self.most[endpoint] = max(self.most[endpoint], self.in_flight[endpoint])
        try:
            await self.open.wait()
        finally:
            self.in_flight[endpoint] -= 1
        return self._answer(url)


async def test_mock_transport_takes_plain_and_async_handlers() -> None:
    plain = MockTransport(lambda url, body, headers: ok(201))
    gate = Gate()
    held = MockTransport(gate)
    async with plain, held:
        assert await plain.post("https://a.example/", b"{}", {}) == ok(201)
        pending = asyncio.create_task(held.post("https://a.example/", b"{}", {}))
        await asyncio.sleep(0)
        assert not pending.done()
        gate.open.set()
        assert await pending == ok()


async def test_each_endpoint_gets_at_most_its_limit_of_requests() -> None:
    gate = Gate()
    harness = Harness(gate, per_endpoint_limit=2)
    a, b = make_webhook("https://a.example/hook"), make_webhook("https://b.example/hook")
    jobs = [make_job(a, n) for n in range(5)] + [make_job(b, n) for n in range(5, 8)]
    assert all(harness.queue(job) for job in jobs)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(harness.runners) == 4, "two runners per endpoint, not one per job"
    assert gate.in_flight == {"https://a.example:443": 2, "https://b.example:443": 2}
    gate.open.set()
    await harness.finish()
    assert gate.most == {"https://a.example:443": 2, "https://b.example:443": 2}
    posted_to_a = [body for url, body, _ in gate.posted if url == a.url]
    assert posted_to_a == [b'{"n":%d}' % n for n in range(5)], "a lane posts in queue order"
    assert harness.statuses() == [200] * 8
    assert len(harness.lanes) == 0, "an idle lane is let go"


async def test_each_attempt_is_signed_for_its_own_event() -> None:
    seen: list[Mapping[str, str]] = []

    def answer(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        seen.append(headers)
        return ok()

    harness = Harness(answer)
    job = make_job(make_webhook("https://a.example/hook"), 1)
    harness.queue(job)
    await harness.finish()
    assert job.task is not None
    assert seen[0]["webhook-id"] == job.task.event.id
    assert seen[0]["webhook-timestamp"] == "1000"
    assert seen[0]["webhook-signature"].startswith("v1,")


async def test_an_open_breaker_defers_its_tasks_until_the_trial_without_posting() -> None:
    calls: list[str] = []

    def failing(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        calls.append(url)
        return ok(503)

    harness = Harness(failing, per_endpoint_limit=1, breaker_failures=2, breaker_cooldown=60)
    webhook = make_webhook("https://a.example/hook")
    for n in range(4):
        harness.queue(make_job(webhook, n))
    await harness.finish()
    assert len(calls) == 2, "the breaker opened after two failures"
    # Only what was sent is an attempt; the others wait for the trial (the clock says 1000).
    assert [r.status for _, r in harness.lanes.attempted] == [503, 503]
    assert [(job.offset, until) for job, until in harness.deferred] == [(2, 1060.0), (3, 1060.0)]


async def test_a_half_open_breaker_lets_only_its_trials_through() -> None:
    now = [1000.0]
    posted: list[bytes] = []

    def answer(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        posted.append(body)
        return ok(500 if now[0] < 1100 else 200)

    harness = Harness(
        answer,
        clock=lambda: now[0],
        per_endpoint_limit=1,
        breaker_failures=1,
        breaker_cooldown=60,
        breaker_trials=2,
    )
    webhook = make_webhook("https://a.example/hook")
    harness.queue(make_job(webhook, 0))
    await harness.finish()
    # Half-open: up to two trials, but the first one fails and reopens it for the rest.
    now[0] = 1061.0
    for n in range(1, 5):
        harness.queue(make_job(webhook, n))
    await harness.finish()
    assert len(posted) == 2, "the first failed trial reopened it: nothing more was sent"
    assert [job.offset for job, _ in harness.deferred] == [2, 3, 4]
    now[0] = 1200.0  # the endpoint is back: the trial closes it, and everything flows
    harness.deferred.clear()
    for n in range(5, 10):
        harness.queue(make_job(webhook, n))
    await harness.finish()
    assert harness.deferred == [] and harness.statuses()[-5:] == [200] * 5


async def test_a_hanging_endpoint_gets_its_new_tasks_deferred_until_it_answers() -> None:
    gate = Gate()
    harness = Harness(gate, per_endpoint_limit=1, queue_wait=0.05)
    webhook = make_webhook("https://slow.example/hook")
    endpoint = endpoint_key(webhook.url)
    assert harness.queue(make_job(webhook, 0))  # taken by the runner, which hangs
    assert harness.queue(make_job(webhook, 1))  # waits behind it
    lane = harness.lanes.lane(endpoint)
    assert harness.lanes.stuck_lanes(time.monotonic()) == []
    await asyncio.sleep(0.1)
    assert not harness.queue(make_job(webhook, 2)), "queued, it would only hold the budget"
    assert [job.offset for job in lane.jobs] == [1]
    stuck = harness.lanes.stuck_lanes(time.monotonic())
    assert stuck == [(endpoint, lane)]
    harness.lanes.start_deferring(endpoint, lane)
    other = make_webhook("https://fast.example/hook")
    assert harness.queue(make_job(other, 3)), "another endpoint is not held up"

    gate.open.set()  # the endpoint answers again: its tasks queue again
    await harness.finish()
    assert not lane.deferring
    assert harness.queue(make_job(webhook, 4))
    await harness.finish()
    assert sorted(job.offset for job, _ in harness.lanes.attempted) == [0, 1, 3, 4]


@pytest.mark.parametrize("deleted", [False, True])
async def test_a_task_whose_webhook_went_away_is_dropped_unposted(deleted: bool) -> None:
    posted: list[str] = []

    def answer(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        posted.append(url)
        return ok()

    harness = Harness(answer)
    webhook = make_webhook("https://a.example/hook")
    job = make_job(webhook, 0)
    harness.queue(job)
    # Disabled (say by another task's 410) or deleted before the runner's turn came.
    if deleted:
        del harness.webhooks[webhook.id]
    else:
        harness.webhooks[webhook.id] = replace(webhook, active=False)
    await harness.finish()
    assert posted == [] and harness.lanes.attempted == []
    assert harness.dropped == [(job, None if deleted else harness.webhooks[webhook.id])]


async def test_a_traced_attempt_ends_its_span_at_the_answer_and_sends_it_with_the_outputs() -> None:
    spans = KeepSpans()
    tracing.configure("test", exporter=spans, env={})
    try:
        answered_at: list[int] = []

        def answer(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
            answered_at.append(time.time_ns())
            if body == b'{"n":1}':
                raise RuntimeError("transport bug")
            return ok(503)

        harness = Harness(answer)
        webhook = make_webhook("https://a.example/hook")
        parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
        first = lane_job(webhook, 0, headers=[("traceparent", parent.encode())], secrets=(SECRET,))
        assert harness.queue(first) and harness.queue(make_job(webhook, 1))
        await asyncio.wait_for(asyncio.gather(*harness.runners), 5)
        assert [str(failure) for failure in harness.failures] == ["transport bug"], harness.failures
        # The POST that raised: its span ended and went out at once, without an answer.
        [raised] = spans.spans
        assert raised.end_time >= answered_at[1]
        assert "http.response.status_code" not in raised.attributes
        # The answered one: ended when the answer came, out with the attempt's other outputs.
        [(job, _)] = harness.lanes.attempted
        assert job is first and job.span is not None
        assert answered_at[0] <= job.span.end_time < time.time_ns()
        finish_attempt_spans(harness.lanes.attempted)
        assert job.span is None
        span = spans.spans[1]
        assert span.trace_id == int("ab" * 16, 16) and span.parent_span_id == int("cd" * 8, 16)
        assert span.end_time <= time.time_ns() and span.end_time - span.start_time > 0
        assert span.status_code is trace.StatusCode.ERROR
        assert span.status_description == "retry: HTTP 503"
        assert span.attributes["http.response.status_code"] == 503
        finish_attempt_spans(harness.lanes.attempted)  # already sent: never twice
        assert len(spans.spans) == 2
    finally:
        tracing.shutdown()
