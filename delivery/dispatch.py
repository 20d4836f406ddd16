"""Where an admitted task goes: onto its endpoint's lane, or settled at once without a post.

A task is settled at once when it cannot be read (dead letter), cannot be signed (dead letter),
names a webhook deleted or inactive (dropped with an attempt record, once the webhook view has
caught up with the webhooks topic), or its endpoint hangs (deferred to its retry tier); a task
whose endpoint's breaker is open when its turn comes is deferred until the breaker's next trial.
"Settle" is the worker's: produce the records, and count the task done once Kafka acknowledged
them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from delivery.config import DeliveryConfig
from delivery.lanes import Job, Lane, Lanes
from delivery.metrics import delivery_metrics
from delivery.outcome import Verdict
from delivery.partitions import PartitionBook
from delivery.planner import DeliveryPlanner
from delivery.sender import endpoint_key
from delivery.transport import AsyncTransport, no_response
from delivery.webhooks import WebhookDirectory
from plumbing.kafka.produce import Record
from schemas.serde import DecodeError, Serde
from schemas.transcode import DeliveryTaskJson
from schemas.webhook import Webhook

Settle = Callable[[Job, list[Record]], None]

log = logging.getLogger(__name__)


class Dispatcher:
    """Routes admitted jobs to :attr:`lanes` (which post them through ``transport``), and
    defers the jobs of endpoints that hang."""

    def __init__(
        self,
        config: DeliveryConfig,
        serde: Serde,
        directory: WebhookDirectory,
        planner: DeliveryPlanner,
        partitions: PartitionBook,
        transport: AsyncTransport,
        clock: Callable[[], float],
        settle: Settle,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        fail: Callable[[BaseException], None],
        failed: Callable[[], bool],
    ) -> None:
        self.lanes = Lanes(
            config, transport, directory, clock, spawn, self.drop, self.defer_until, fail
        )
        self._queue_wait = config.queue_wait
        self._webhook_wait = config.webhook_wait
        self._serde = serde
        self._directory = directory
        self._planner = planner
        self._partitions = partitions
        self._clock = clock
        self._settle = settle
        self._spawn = spawn
        self._fail = fail
        self._failed = failed
        self._metrics = delivery_metrics()  # outcomes settled here, without an attempt

    def route(self, job: Job) -> None:
        """Decode the task and queue it on its endpoint's lane (or settle it at once)."""
        message = job.message
        try:
            # The event comes as the JSON body it is posted as (transcoded from the Avro bytes).
            task = self._serde.task_json(message.value(), message.topic() or "")
        except DecodeError as exc:
            self._settle(job, self._planner.undecodable(message, exc.reason, self._clock()))
            self._metrics.count("dead_lettered")
            return
        webhook = self._directory.get(task.webhook_id)
        if webhook is None or not webhook.active:
            # Maybe not read yet: catch up with the webhooks topic off the hot path.
            self._spawn(self._route_after_catch_up(job, task))
            return
        self._dispatch(job, task, webhook)

    async def _route_after_catch_up(self, job: Job, task: DeliveryTaskJson) -> None:
        try:
            try:
                webhook = await self._directory.lookup(task.webhook_id, self._webhook_wait)
            except TimeoutError as exc:
                # Unknown is not known to be gone: wait on the ladder for the view, not drop.
                log.debug("webhook %s: %s; deferring task %s", task.webhook_id, exc, task.id)
                job.task = task
                reason = "deferred: the webhook view is behind the webhooks topic"
                now = self._clock()
                plan = self._planner.deferral(job.message, task, job.tier, job.state, reason, now)
                self._settle(job, plan)
                self._metrics.count("deferred", job)
                return
            if webhook is None or not webhook.active:
                job.task = task
                self.drop(job, webhook)
                return
            self._dispatch(job, task, webhook)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def drop(self, job: Job, webhook: Webhook | None) -> None:
        """Record and settle, unposted, a task whose webhook is deleted or inactive."""
        assert job.task is not None  # decoded before it could be dropped
        self._settle(job, self._planner.dropped(job.task, job.state, webhook, self._clock()))
        self._metrics.count("disabled", job)

    def defer_until(self, job: Job, until: float, reason: str | None = None) -> None:
        """Park, unposted and uncounted, a job whose endpoint's breaker is open, until about
        ``until`` (epoch s: the breaker's next trial), or whose webhook's rate limit gives it
        a turn only then (``reason`` says so)."""
        assert job.task is not None  # queued jobs are decoded
        now = self._clock()
        if reason is None:
            reason = f"deferred: circuit open, next trial in {max(until - now, 0.0):.1f}s"
        log.debug("task %s %s", job.task.id, reason)
        plan = self._planner.deferral(
            job.message, job.task, job.tier, job.state, reason, now, until
        )
        self._settle(job, plan)
        self._metrics.count("deferred", job)

    def _dispatch(self, job: Job, task: DeliveryTaskJson, webhook: Webhook) -> None:
        now = self._clock()
        try:
            secrets = self._directory.secrets(webhook, now)
        except ValueError as exc:
            self._settle_unsigned(job, task, str(exc), now)
            return
        if not secrets:
            self._settle_unsigned(job, task, "webhook has no active signing secret", now)
            return
        if webhook.headers:  # custom headers (issue 18): decrypted once per webhook version
            try:
                job.extra_headers = self._directory.headers(webhook)
            except ValueError:
                # Named, never shown: the value is a secret.
                self._settle_unsigned(job, task, "a custom header cannot be decrypted", now)
                return
        job.task, job.webhook, job.secrets = task, webhook, secrets
        endpoint = endpoint_key(webhook.url)
        if not self.lanes.queue(endpoint, job):
            # The endpoint hangs: queued here, the task would only take the in-flight budget
            # every other endpoint needs.
            self._defer(endpoint, self.lanes.lane(endpoint), job, task, now)

    def _settle_unsigned(self, job: Job, task: DeliveryTaskJson, reason: str, now: float) -> None:
        """Dead-letter a task that cannot be signed (counted as an attempt, never sent)."""
        result = no_response(Verdict.DEAD_LETTER, reason)
        records = self._planner.after_attempt(
            job.message, task, result, job.tier, job.state, None, now
        )
        self._settle(job, records)
        self._metrics.count("dead_lettered", job)

    def _defer(
        self, endpoint: str, lane: Lane, job: Job, task: DeliveryTaskJson, now: float
    ) -> None:
        """Put the task back in the retry tier it came from, with no attempt made or counted."""
        self.lanes.start_deferring(endpoint, lane)
        reason = f"deferred: {len(lane.jobs)} tasks queued for this endpoint"
        self._settle(
            job, self._planner.deferral(job.message, task, job.tier, job.state, reason, now)
        )
        self._metrics.count("deferred", job)

    def shed_stuck_lanes(self, now: float) -> None:
        """Defer the queued jobs that waited past the limit in lanes whose endpoint hangs
        (``Lane.stuck``): their queues would hold the in-flight budget."""
        wait, mono = self._queue_wait, time.monotonic()
        for endpoint, lane in self.lanes.stuck_lanes(mono):
            while not self._failed() and lane.stuck(mono, wait):
                job = lane.jobs.popleft()
                self.lanes.unhold(job)  # out of the lane: no longer waits for a rate-limit turn
                assert job.task is not None  # set when the job was queued
                message = job.message
                key = (message.topic() or "", message.partition() or 0)
                if not self._partitions.owns(key, job.progress):
                    # Its partition moved to another worker, which redoes it: no copy here.
                    self._partitions.done(job.progress, job.offset)
                    continue
                try:
                    self._defer(endpoint, lane, job, job.task, now)
                except Exception as exc:  # Kafka refused a record, or a bug
                    self._fail(exc)
