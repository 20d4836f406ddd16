"""Jobs and the per-endpoint lanes that post them.

Each endpoint (scheme, host, port) has a lane: a queue of jobs and at most the per-endpoint
limit of long-lived runners pulling from it, so a slow endpoint holds only its own runners and a
record costs no asyncio task or semaphore wait of its own. A lane whose queue stands still while
its endpoint answers nothing is *stuck*: its new jobs are deferred (back to the retry tier)
rather than queued, so they do not hold the in-flight budget every other endpoint needs.
A job whose endpoint's breaker is open when its turn comes is deferred too, until the breaker's
next trial: nothing is sent, so nothing is counted against its retry ladder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Message

from delivery.config import DeliveryConfig
from delivery.health import BreakerState, CircuitBreakers
from delivery.offsets import PartitionProgress
from delivery.outcome import Verdict
from delivery.ratelimit import TokenBucket
from delivery.retry_headers import RetryState
from delivery.signing import signature_headers
from delivery.trace import end_attempt_span, start_attempt_span
from delivery.transport import AsyncTransport, AttemptResult
from plumbing import tracing
from plumbing.lean_spans import LeanSpan
from schemas.transcode import DeliveryTaskJson
from schemas.webhook import Webhook

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One admitted record on its way through an endpoint's lane."""

    message: Message
    tier: int | None  # the retry tier it was read from; None: a fresh task (deliveries topic)
    state: RetryState
    progress: PartitionProgress
    offset: int
    queued_at: float = 0.0  # when it joined its endpoint's queue (time.monotonic)
    task: DeliveryTaskJson | None = None
    webhook: Webhook | None = None
    secrets: tuple[str, ...] | None = field(default=None, repr=False)  # plaintext: never shown
    # The webhook's custom headers in plaintext (issue 18); empty for most webhooks.
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Its webhook's rate-limit bucket while it waits in the lane for its turn; None: unlimited.
    bucket: TokenBucket | None = field(default=None, repr=False)
    # Traced: its attempt's span, made as its record was read (``delivery.trace``: with the
    # batch's others), started with the attempt, ended as the answer comes, and given its
    # outcome with the attempt's other outputs.
    span: LeanSpan | None = field(default=None, repr=False)


class Lane:
    """One endpoint's queued jobs and how many runners post them."""

    __slots__ = ("answered_at", "deferring", "jobs", "runners")

    def __init__(self) -> None:
        self.jobs: deque[Job] = deque()
        self.runners = 0
        # When the endpoint last answered an attempt (time.monotonic; the lane's start before).
        self.answered_at = time.monotonic()
        # Set once its queue stood still; new jobs then are deferred until the endpoint
        # answers again.
        self.deferring = False

    def stuck(self, now: float, wait: float) -> bool:
        """Its oldest job waited over ``wait`` seconds, and the endpoint answered nothing for
        as long: it hangs (a merely slow endpoint, or a busy worker, still gets answers)."""
        return bool(self.jobs) and min(now - self.jobs[0].queued_at, now - self.answered_at) > wait


class Defer(Protocol):
    """Parks a job unposted and uncounted until about ``until`` (epoch s)."""

    def __call__(self, job: Job, until: float, reason: str | None = None) -> None: ...


class WebhookLookup(Protocol):
    """Where a runner checks, just before posting, that the webhook is still active."""

    def get(self, webhook_id: str) -> Webhook | None:
        """The current version of the webhook, if any."""


class Lanes:
    """Every endpoint's lane, and the runners posting their jobs through ``transport``.

    A finished attempt is appended to :attr:`attempted` as ``(job, result)``; the worker
    writes their outputs in one pass. ``drop`` hears of a job found unpostable when its turn
    came (its webhook deleted or disabled meanwhile), ``defer(job, until)`` of a job not sent
    because its endpoint's breaker is open (to come back at ``until``, epoch s), ``fail`` of an
    unexpected error, and ``spawn`` starts (and tracks) each runner.
    """

    def __init__(
        self,
        config: DeliveryConfig,
        transport: AsyncTransport,
        webhooks: WebhookLookup,
        clock: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        drop: Callable[[Job, Webhook | None], None],
        defer: Defer,
        fail: Callable[[BaseException], None],
    ) -> None:
        self.breakers = CircuitBreakers(
            config.breaker_failures,
            config.breaker_cooldown,
            config.breaker_trials,
            config.breaker_max_cooldown,
        )
        self.attempted: list[tuple[Job, AttemptResult]] = []
        self._lanes: dict[str, Lane] = {}
        self._per_endpoint = config.per_endpoint_limit
        self._queue_wait = config.queue_wait
        self._transport = transport
        self._webhooks = webhooks
        self._clock = clock
        self._spawn = spawn
        self._drop = drop
        self._defer = defer
        self._fail = fail
        self._last_shed = 0.0
        # Rate-limited webhooks' buckets (delivery/ratelimit.py), by webhook id; shared by
        # every runner of the webhook's lane. Webhooks without a limit never get one.
        self._buckets: dict[str, TokenBucket] = {}
        self._hold = config.rate_limit_hold

    def __len__(self) -> int:
        return len(self._lanes)

    def lane(self, endpoint: str) -> Lane:
        """The lane of ``endpoint`` (a new one if it has none)."""
        lane = self._lanes.get(endpoint)
        if lane is None:
            lane = self._lanes[endpoint] = Lane()
        return lane

    def queue(self, endpoint: str, job: Job) -> bool:
        """Queue ``job`` on its endpoint's lane and start a runner if the endpoint has room
        for one; False (nothing queued) when the endpoint hangs: the job is to be deferred."""
        lane = self._lanes.get(endpoint)
        if lane is None:
            lane = self._lanes[endpoint] = Lane()
        queued_at = time.monotonic()
        if lane.deferring or lane.stuck(queued_at, self._queue_wait):
            return False
        job.queued_at = queued_at
        webhook = job.webhook
        if webhook is not None and webhook.rate_limit is not None and not self._paced(job, webhook):
            return True  # parked until about its turn: handled
        lane.jobs.append(job)
        if lane.runners < self._per_endpoint:
            lane.runners += 1
            self._spawn(self._run(endpoint, lane))
        return True

    def _paced(self, job: Job, webhook: Webhook) -> bool:
        """Hold ``job`` in the lane for a turn of its webhook's bucket (reserved by its runner
        right before sending); False when the turn is too far off: it was parked instead.

        A held job costs its place in the in-flight budget; a parked one costs nothing until it
        comes back (about ``hold / 2`` before its turn, one rate slot after the previous one
        parked), and neither is counted as an attempt.
        """
        limit = webhook.rate_limit
        assert limit is not None
        now = self._clock()
        bucket = self._buckets.get(webhook.id)
        if bucket is None or (bucket.rate, bucket.burst) != (limit.per_second, limit.burst):
            bucket = self._buckets[webhook.id] = TokenBucket.full(
                limit.per_second, limit.burst, now
            )
        delay = bucket.turn_in(now)
        if delay > self._hold:
            until = bucket.defer_slot(now, now + delay - self._hold / 2)
            self._defer(job, until, f"deferred: rate limit, next turn in {until - now:.1f}s")
            return False
        bucket.held += 1
        job.bucket = bucket
        return True

    @staticmethod
    def unhold(job: Job) -> None:
        """``job`` leaves its lane: no longer waiting for a turn of its webhook's bucket."""
        if job.bucket is not None:
            job.bucket.held -= 1
            job.bucket = None

    def start_deferring(self, endpoint: str, lane: Lane) -> None:
        """Defer ``lane``'s new jobs until its endpoint answers again."""
        if not lane.deferring:
            lane.deferring = True
            log.warning(
                "endpoint %s: %d tasks queued, the oldest for over %ss; deferring new ones",
                endpoint,
                len(lane.jobs),
                self._queue_wait,
            )

    def stuck_lanes(self, now: float) -> list[tuple[str, Lane]]:
        """The lanes whose oldest job waited too long (``Lane.stuck``) at ``now``
        (time.monotonic); checked at most every quarter of the wait, as lanes may be many."""
        if now - self._last_shed < self._queue_wait / 4:
            return []
        self._last_shed = now
        wait = self._queue_wait
        return [(endpoint, lane) for endpoint, lane in self._lanes.items() if lane.stuck(now, wait)]

    def _breaker_moved(self, endpoint: str, result: AttemptResult) -> None:
        """Log a change of ``endpoint``'s breaker (just made by ``result``)."""
        breakers = self.breakers
        now = self._clock()
        if breakers.state(endpoint, now) is BreakerState.CLOSED:
            log.info("endpoint %s answers again: circuit closed", endpoint)
            return
        log.warning(
            "endpoint %s keeps failing (%s): circuit open, its tasks deferred for %.3gs, "
            "then up to %d trials",
            endpoint,
            result.outcome.reason,
            breakers.next_trial(endpoint, now) - now,
            breakers.trials,
        )

    def _may_send(self, job: Job, webhook_id: str, endpoint: str, now: float) -> bool:
        """Whether the job's attempt goes ahead now; if not, the job is dropped (its webhook
        is gone or disabled, e.g. by another task's 410) or deferred (the endpoint's breaker is
        open, or its trials are out: nothing sent, nothing counted)."""
        current = self._webhooks.get(webhook_id)
        if current is None or not current.active:
            self._drop(job, current)
            return False
        if not self.breakers.allow(endpoint, now):
            self._defer(job, self.breakers.next_trial(endpoint, now))
            return False
        return True

    def _answered(self, endpoint: str, lane: Lane, job: Job, result: AttemptResult) -> None:
        """An attempt is over: the lane and the endpoint's breaker learn its outcome; its
        outputs wait for the next batch."""
        if result.status:  # it answers (again): its tasks queue again
            lane.deferring = False
            lane.answered_at = time.monotonic()
        failed = result.outcome.verdict is Verdict.RETRY
        if self.breakers.record(endpoint, not failed, self._clock()) is not None:
            self._breaker_moved(endpoint, result)
        # The outputs are written in one pass for every attempt finished meanwhile:
        # interleaving that work with the HTTP calls costs far more CPU (caches) than doing it
        # in a batch.
        self.attempted.append((job, result))

    async def _run(self, endpoint: str, lane: Lane) -> None:
        """Post the lane's jobs one after another until it is empty.

        The attempt is inline (not a coroutine of its own): every await of the HTTP call
        resumes through each coroutine frame above it, once per request and phase.
        """
        post, jobs = self._transport.post, lane.jobs
        try:
            while jobs:
                job = jobs.popleft()
                task, webhook, secrets = job.task, job.webhook, job.secrets
                try:
                    assert task is not None and webhook is not None and secrets is not None
                    bucket = job.bucket
                    if bucket is not None:  # rate-limited: wait for its turn, uncounted
                        self.unhold(job)
                        wait = bucket.reserve(self._clock()) - self._clock()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    now = self._clock()
                    if not self._may_send(job, webhook.id, endpoint, now):
                        continue
                    # Signed now: webhook-timestamp is the attempt's time, however long the
                    # job waited in the lane.
                    body = task.event.json
                    headers = signature_headers(task.event.id, int(now), body, secrets)
                    if job.extra_headers:  # custom headers; reserved names never reach here
                        headers.update(job.extra_headers)
                    # Traced: a span per attempt, whose traceparent the endpoint gets.
                    span = start_attempt_span(job, headers) if tracing.enabled else None
                    try:
                        result = await post(webhook.url, body, headers)
                    except BaseException:
                        if span is not None:
                            end_attempt_span(span, job, None)
                        raise
                    if span is not None:
                        span.end_time = time.time_ns()
                    self._answered(endpoint, lane, job, result)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    self._fail(exc)
        finally:
            lane.runners -= 1
            if not lane.runners and not lane.jobs and self._lanes.get(endpoint) is lane:
                del self._lanes[endpoint]
