"""The delivery worker: consumes tasks and retry tiers, posts them, and records every attempt.

Threads: asyncio runs the HTTP attempts and serves the producer's acknowledgements (it polls
the producer itself, so an acknowledgement costs no thread hop); one executor thread owns the
Kafka consumer (every consumer call, and so every rebalance callback, happens there, in order).
A task's offset counts as done only once everything it produced (attempt record, retry or dead
letter) is acknowledged, and a partition's offset is committed only below its lowest unfinished
task: a crash redoes work, it never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from delivery.gctune import steady_state_gc
from delivery.health import CircuitBreakers, FailureWindows
from delivery.offsets import Outputs, PartitionProgress
from delivery.outcome import Outcome, Verdict
from delivery.retry_headers import FRESH, RetryState, parse_retry_state, without_retry_headers
from delivery.schedule import RetryLadder
from delivery.schema_setup import register_schemas
from delivery.sender import AttemptResult, Sender, endpoint_key
from delivery.signing import signature_headers
from delivery.webhooks import WebhookDirectory
from plumbing.kafka.clients import consume_available, consumer_config, producer_config
from plumbing.kafka.deadletter import dead_letter_headers, message_headers
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import DecodeError, Serde
from schemas.transcode import DeliveryTaskJson
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

SOURCE = "delivery"
_COMMIT_INTERVAL = 0.2
_POLL_TIMEOUT = 0.05
_BATCH = 500
# Records admitted between two turns of the event loop: a whole batch at once would hold up
# every request in flight (e.g. a burst of retries coming due) for tens of milliseconds.
_ADMIT_SLICE = 64
# How often the loop writes the outputs of finished attempts and serves producer
# acknowledgements (seconds).
_ACK_INTERVAL = 0.005
# At the in-flight limit, wait this long for room before pausing every partition: pausing
# drops librdkafka's prefetched records, so it is kept for endpoints that stay slow.
_ROOM_WAIT = 0.5

T = TypeVar("T")
PartitionKey = tuple[str, int]
Headers = Sequence[tuple[str, str | bytes | None]]


class Output(NamedTuple):
    """A record an attempt leaves behind: an attempt record, a retry, a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(slots=True)
class _Job:
    """One admitted record on its way through an endpoint's lane."""

    message: Message
    tier: int
    state: RetryState
    progress: PartitionProgress
    offset: int
    queued_at: float = 0.0  # when it joined its endpoint's queue (time.monotonic)
    task: DeliveryTaskJson | None = None
    webhook: Webhook | None = None
    secrets: tuple[str, ...] | None = field(default=None, repr=False)  # plaintext: never shown


class _Lane:
    """One endpoint's queued jobs and the runners posting them (at most the per-endpoint limit).

    Long-lived runners pull jobs in turn, so a record costs no asyncio task and no semaphore
    wait of its own; a slow endpoint holds only its own runners.
    """

    __slots__ = ("answered_at", "deferring", "jobs", "runners")

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()
        self.runners = 0
        # When the endpoint last answered an attempt (time.monotonic; the lane's start before).
        self.answered_at = time.monotonic()
        # Set once its queue stood still; new jobs then go straight back to the retry tier
        # (``_dispatch``) until the endpoint answers again.
        self.deferring = False

    def stuck(self, now: float, wait: float) -> bool:
        """Its oldest job waited over ``wait`` seconds, and the endpoint answered nothing for
        as long: it hangs (a merely slow endpoint, or a busy worker, still gets answers)."""
        return bool(self.jobs) and min(now - self.jobs[0].queued_at, now - self.answered_at) > wait


def group_id(settings: Settings) -> str:
    """The consumer group of the delivery workers (per topic prefix)."""
    return f"{settings.topic_prefix}delivery"


class WorkerError(RuntimeError):
    """The worker cannot go on (Kafka refused to store its output); restart it."""


class DeliveryWorker:
    """Delivers tasks from ``deliveries`` and every retry tier until ``stop`` is set.

    ``serde`` may be shared with the caller (an in-process mock registry must be).
    """

    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._serde = serde or Serde(settings.schema_registry_url)
        self._clock = clock
        topics = settings.topics
        self._topics = topics
        self._ladder = RetryLadder(settings.retry_tiers, settings.delivery_jitter)
        self._tier_of: dict[str, int] = {topics.deliveries: -1}
        self._tier_of.update({topics.retry(name): i for i, name in enumerate(settings.retry_tiers)})
        self._breakers = CircuitBreakers(
            settings.delivery_breaker_failures, settings.delivery_breaker_cooldown
        )
        self._failing = FailureWindows(settings.delivery_disable_after)
        self._lanes: dict[str, _Lane] = {}
        self._per_endpoint = settings.delivery_per_endpoint_limit
        # Partition state: shared with rebalance callbacks (consumer thread), hence the lock.
        self._lock = threading.Lock()
        self._progress: dict[PartitionKey, PartitionProgress] = {}
        self._held: dict[PartitionKey, float] = {}  # tier partitions paused until their head is due
        self._in_flight = 0  # admitted tasks whose outputs are not all acknowledged yet
        # At the limit, the poll loop waits until in_flight is down to the low-water mark, so it
        # takes records in batches rather than one per finished task.
        limit = settings.delivery_concurrency
        self._low_water = limit - max(1, min(_BATCH, limit // 4))
        self._room = asyncio.Event()  # set while in_flight is at most the low-water mark
        self._room.set()
        self._throttled = False
        self._tasks: set[asyncio.Task[None]] = set()  # lane runners and webhook catch-ups
        # Attempts whose outputs are still to be written (see ``_write_finished``).
        self._attempted: list[tuple[_Job, AttemptResult]] = []
        self._failure: BaseException | None = None
        self._last_commit = 0.0
        self._last_shed = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until ``stop`` is set, then finish or hand back in-flight work."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        register_schemas(self._serde, self._topics)
        self._directory = WebhookDirectory(self._settings, self._serde)
        await loop.run_in_executor(None, self._directory.start)
        self._producer = Producer(producer_config(self._settings))
        acks = asyncio.create_task(self._serve_acks())
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="delivery-consumer")
        self._consumer = Consumer(
            consumer_config(
                self._settings,
                group_id(self._settings),
                **{
                    "client.id": f"delivery-{uuid.uuid4().hex[:8]}",
                    "fetch.wait.max.ms": 50,
                    "session.timeout.ms": int(self._settings.delivery_session_timeout * 1000),
                },
            )
        )
        await self._kafka(
            self._consumer.subscribe,
            list(self._tier_of),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            async with Sender(self._settings) as sender:
                self._sender = sender
                with steady_state_gc():
                    await self._consume(stop)
                    await self._drain()
        finally:
            acks.cancel()
            await self._shutdown()
        if self._failure is not None:
            raise WorkerError(f"delivery worker failed: {self._failure}") from self._failure

    async def _consume(self, stop: asyncio.Event) -> None:
        limit = self._settings.delivery_concurrency
        while not stop.is_set() and self._failure is None:
            await self._housekeeping()
            room = limit - self._in_flight
            if room <= 0 and not self._throttled:
                # Usually room comes back within milliseconds; records stay prefetched meanwhile.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), _ROOM_WAIT)
                if not self._room.is_set():
                    self._throttle()
                continue
            # Never take more than there is room for, so the limit holds without pausing.
            batch = min(_BATCH, max(room, 1))
            messages = await self._kafka(consume_available, self._consumer, batch, _POLL_TIMEOUT)
            for n, message in enumerate(messages, 1):
                self._admit(message)
                if n % _ADMIT_SLICE == 0:
                    await asyncio.sleep(0)  # let finished requests move on meanwhile

    async def _drain(self) -> None:
        # Graceful shutdown: give in-flight attempts their full timeout, then hand them back
        # (uncommitted, so the group redelivers them); wait for the outputs of finished ones.
        deadline = time.monotonic() + self._settings.delivery_timeout + 5
        # Runners keep taking their lane's queued jobs; a catch-up may start a runner meanwhile.
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        self._write_finished()
        # Acknowledgements arrive by polling (``_serve_acks``): there is no event to wait on.
        while len(self._producer) and self._failure is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_ACK_INTERVAL)
        await self._commit(force=True)

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self._kafka(self._consumer.close)
        self._executor.shutdown(wait=True)
        # Any output still unacknowledged belongs to a task whose offset stays uncommitted.
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 10)
        self._directory.stop()

    async def _serve_acks(self) -> None:
        """Write the outputs of finished attempts, and run producer delivery callbacks on the
        loop (so they touch worker state directly)."""
        while True:
            self._write_finished()
            self._producer.poll(0)
            await asyncio.sleep(_ACK_INTERVAL)

    async def _kafka(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a consumer call on the consumer's own thread."""
        return await self._loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _kafka_later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a consumer call; it runs before the next poll (the executor is FIFO)."""

        def call() -> None:
            try:
                fn(*args)
            except KafkaException as exc:  # e.g. the partition was revoked meanwhile
                log.debug("consumer call %s failed: %s", getattr(fn, "__name__", fn), exc)

        self._executor.submit(call)

    # -- rebalancing (runs on the consumer thread, inside consume) --------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._progress[(tp.topic, tp.partition)] = PartitionProgress()
                self._held.pop((tp.topic, tp.partition), None)
            throttled = self._throttled
        if throttled:
            # New partitions join the others' pause until there is room again.
            consumer.pause(partitions)
        else:
            # librdkafka remembers pause state across assignments; start every partition running.
            consumer.resume(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        offsets = self._forget(partitions)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        offsets = []
        with self._lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                progress = self._progress.pop(key, None)
                self._held.pop(key, None)
                offset = progress.to_commit() if progress is not None else None
                if offset is not None:
                    offsets.append(TopicPartition(tp.topic, tp.partition, offset))
        return offsets

    # -- the poll loop ----------------------------------------------------------------------------

    def _admit(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                self._failure = KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str())
            return
        topic, partition, offset = (
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
        )
        key = (topic, partition)
        with self._lock:
            progress = self._progress.get(key)
            if progress is None or key in self._held:
                return  # revoked, or behind a held head (re-read after the seek)
            tier = self._tier_of[topic]
            # A first attempt has no headers: nothing to parse (the common case).
            state = parse_retry_state(message_headers(message)) if message.headers() else FRESH
            due = state.not_before_ms / 1000
            if tier >= 0 and due > self._clock():
                # Not due: pause the partition and rewind to this record; it is read again
                # once the partition resumes at its due time. Polling goes on meanwhile.
                self._held[key] = due
                self._kafka_later(self._consumer.pause, [TopicPartition(topic, partition)])
                self._kafka_later(self._consumer.seek, TopicPartition(topic, partition, offset))
                return
            progress.start(offset)
            self._in_flight += 1
            if self._in_flight > self._low_water:
                self._room.clear()
        job = _Job(message, tier, state, progress, offset)
        try:
            self._route(job)
        except Exception as exc:  # a bug, not a record's fault: keep the offset, stop the worker
            self._fail(exc)

    def _throttle(self) -> None:
        """Pause every partition: the in-flight limit stayed reached (slow endpoints)."""
        with self._lock:
            self._throttled = True
            assigned = [TopicPartition(t, p) for t, p in self._progress]
        self._kafka_later(self._consumer.pause, assigned)

    async def _housekeeping(self) -> None:
        now = self._clock()
        self._shed_stuck_lanes(now)
        with self._lock:
            due = [key for key, at in self._held.items() if at <= now]
            for key in due:
                del self._held[key]
            assigned = list(self._progress)
            under = self._in_flight <= self._settings.delivery_concurrency // 2
            held = set(self._held)
            resume = self._throttled and under
            if resume:
                self._throttled = False
        if due and not self._throttled:
            self._kafka_later(self._consumer.resume, [TopicPartition(t, p) for t, p in due])
        if resume:
            running = [TopicPartition(t, p) for t, p in assigned if (t, p) not in held]
            self._kafka_later(self._consumer.resume, running)
        await self._commit()

    async def _commit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < _COMMIT_INTERVAL:
            return
        self._last_commit = now
        offsets = []
        with self._lock:
            for (topic, partition), progress in self._progress.items():
                offset = progress.to_commit()
                if offset is not None:
                    offsets.append(TopicPartition(topic, partition, offset))
                    progress.committed = offset
        if offsets:
            try:
                await self._kafka(self._consumer.commit, offsets=offsets, asynchronous=not force)
            except KafkaException as exc:
                log.warning("commit failed (will retry): %s", exc)

    # -- one task ---------------------------------------------------------------------------------

    def _route(self, job: _Job) -> None:
        """Decode the task and queue it on its endpoint's lane (or settle it at once)."""
        message = job.message
        try:
            # The event comes as the JSON body it is posted as (transcoded from the Avro bytes).
            task = self._serde.task_json(message.value(), message.topic() or "")
        except DecodeError as exc:
            reason = f"undecodable delivery task: {exc.reason}"
            self._complete(job, [self._dead_letter(message, reason, {})])
            return
        webhook = self._directory.get(task.webhook_id)
        if webhook is None or not webhook.active:
            # Maybe not read yet: catch up with the webhooks topic off the hot path.
            self._spawn(self._route_after_catch_up(job, task))
            return
        self._dispatch(job, task, webhook)

    async def _route_after_catch_up(self, job: _Job, task: DeliveryTaskJson) -> None:
        try:
            webhook = await self._directory.lookup(task.webhook_id)
            if webhook is None or not webhook.active:
                self._drop(job, task, webhook)
                return
            self._dispatch(job, task, webhook)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _drop(self, job: _Job, task: DeliveryTaskJson, webhook: Webhook | None) -> None:
        """Record and finish, unposted, a task whose webhook is deleted or inactive."""
        why = "webhook deleted" if webhook is None else "webhook inactive"
        log.info("dropping delivery %s: %s", task.id, why)
        record = self._record(task, DeliveryStatus.DISABLED, job.state.attempts, error=why)
        self._complete(job, [record])

    def _dispatch(self, job: _Job, task: DeliveryTaskJson, webhook: Webhook) -> None:
        attempt = job.state.attempts + 1
        now = self._clock()
        try:
            secrets = self._directory.secrets(webhook, now)
        except ValueError as exc:
            result = _no_response(Verdict.DEAD_LETTER, str(exc))
            self._complete(job, self._finish(job.message, task, attempt, result))
            return
        if not secrets:
            result = _no_response(Verdict.DEAD_LETTER, "webhook has no active signing secret")
            self._complete(job, self._finish(job.message, task, attempt, result))
            return
        job.task, job.webhook, job.secrets = task, webhook, secrets
        endpoint = endpoint_key(webhook.url)
        lane = self._lanes.get(endpoint)
        if lane is None:
            lane = self._lanes[endpoint] = _Lane()
        queued_at = time.monotonic()
        if lane.deferring or lane.stuck(queued_at, self._settings.delivery_queue_wait):
            # The endpoint hangs: queued here, the task would only take the in-flight budget
            # every other endpoint needs.
            self._defer(endpoint, lane, job, task, now)
            return
        job.queued_at = queued_at
        lane.jobs.append(job)
        if lane.runners < self._per_endpoint:
            lane.runners += 1
            self._spawn(self._run_lane(endpoint, lane))

    def _shed_stuck_lanes(self, now: float) -> None:
        """Defer the queued jobs that waited past the limit in lanes whose endpoint hangs
        (``_Lane.stuck``): their queues would hold the in-flight budget."""
        wait = self._settings.delivery_queue_wait
        mono = time.monotonic()
        if mono - self._last_shed < wait / 4:
            return  # a job is shed at most a quarter of the wait late; lanes may be many
        self._last_shed = mono
        for endpoint, lane in list(self._lanes.items()):
            while self._failure is None and lane.stuck(mono, wait):
                job = lane.jobs.popleft()
                assert job.task is not None  # set when the job was queued
                message = job.message
                with self._lock:
                    owned = self._progress.get((message.topic() or "", message.partition() or 0))
                if owned is not job.progress:
                    # Its partition moved to another worker, which redoes it: no copy here.
                    self._finished(job.progress, job.offset)
                    continue
                try:
                    self._defer(endpoint, lane, job, job.task, now)
                except Exception as exc:  # Kafka refused a record, or a bug
                    self._fail(exc)

    def _defer(
        self, endpoint: str, lane: _Lane, job: _Job, task: DeliveryTaskJson, now: float
    ) -> None:
        """Put the task back in the retry tier it came from (the first for a new task), with no
        attempt made or counted."""
        if not lane.deferring:
            lane.deferring = True
            log.warning(
                "endpoint %s: %d tasks queued, the oldest for over %ss; deferring new ones",
                endpoint,
                len(lane.jobs),
                self._settings.delivery_queue_wait,
            )
        step = self._ladder.next_step(max(job.tier, 0) - 1, now)
        assert step is not None  # the tier a task came from exists
        reason = f"deferred: {len(lane.jobs)} tasks queued for this endpoint"
        attempts = job.state.attempts
        result = _no_response(Verdict.RETRY, reason)
        due = round(step.not_before * 1_000_000)
        outputs = [
            self._schedule(job.message, attempts, step.tier, step.not_before, result, job.state),
            self._record(task, DeliveryStatus.RETRYING, attempts, 0, reason, due, 0.0, now),
        ]
        self._complete(job, outputs)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, endpoint: str, lane: _Lane) -> None:
        """Post the lane's jobs one after another until it is empty.

        The attempt is inline (not a coroutine of its own): every await of the HTTP call
        resumes through each coroutine frame above it, once per request and phase.
        """
        post, breakers, jobs = self._sender.post, self._breakers, lane.jobs
        try:
            while jobs:
                job = jobs.popleft()
                task, webhook, secrets = job.task, job.webhook, job.secrets
                try:
                    assert task is not None and webhook is not None and secrets is not None
                    current = self._directory.get(webhook.id)
                    if current is None or not current.active:
                        self._drop(job, task, current)  # e.g. another task's 410 disabled it
                        continue
                    now = self._clock()
                    if breakers.allow(endpoint, now):
                        # Signed now: webhook-timestamp is the attempt's time, however long
                        # the job waited in the lane.
                        body = task.event.json
                        headers = signature_headers(task.event.id, int(now), body, secrets)
                        result = await post(webhook.url, body, headers)
                        if result.status:  # it answers (again): its tasks queue again
                            lane.deferring = False
                            lane.answered_at = time.monotonic()
                        failed = result.outcome.verdict is Verdict.RETRY
                        breakers.record(endpoint, success=not failed, now=self._clock())
                    else:
                        result = _no_response(Verdict.RETRY, "circuit open: endpoint keeps failing")
                    # The outputs are written in one pass for every attempt finished meanwhile:
                    # interleaving that work with the HTTP calls costs far more CPU (caches)
                    # than doing it in a batch.
                    self._attempted.append((job, result))
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    self._fail(exc)
        finally:
            lane.runners -= 1
            if not lane.runners and not lane.jobs and self._lanes.get(endpoint) is lane:
                del self._lanes[endpoint]

    def _write_finished(self) -> None:
        """Produce the outputs of every attempt finished since the last pass."""
        if not self._attempted:
            return
        attempted, self._attempted = self._attempted, []
        for job, result in attempted:
            task, webhook = job.task, job.webhook
            assert task is not None and webhook is not None
            try:
                attempt = job.state.attempts + 1
                outputs = self._finish(
                    job.message, task, attempt, result, job.tier, job.state, webhook
                )
                self._complete(job, outputs)
            except Exception as exc:  # Kafka refused a record, or a bug
                self._fail(exc)

    def _complete(self, job: _Job, outputs: list[Output]) -> None:
        """Produce the task's outputs; its offset finishes once Kafka acknowledged them all."""
        tracker = Outputs(
            functools.partial(self._finished, job.progress, job.offset), self._on_refused
        )
        try:
            for output in outputs:
                self._produce(output, tracker)
        except BaseException:
            tracker.fail()  # the task stays unfinished, so its offset is never committed
            raise
        tracker.seal()

    def _fail(self, exc: BaseException) -> None:
        """Kafka refused our output (or a bug): stop the worker, to be restarted."""
        log.error("delivery worker stopping", exc_info=exc)
        if self._failure is None:
            self._failure = exc

    def _finished(self, progress: PartitionProgress, offset: int) -> None:
        """Every output of the task at ``offset`` is acknowledged: its offset may be committed."""
        with self._lock:
            progress.finish(offset)
            self._in_flight -= 1
            if self._in_flight <= self._low_water:
                self._room.set()

    def _finish(
        self,
        message: Message,
        task: DeliveryTaskJson,
        attempt: int,
        result: AttemptResult,
        tier: int = -1,
        state: RetryState | None = None,
        webhook: Webhook | None = None,
    ) -> list[Output]:
        """What an attempt leaves behind: its record, and a retry, a dead letter or a disable."""
        now = self._clock()
        outcome = result.outcome
        verdict = outcome.verdict
        if verdict is Verdict.DELIVERED:
            if webhook is not None:
                self._failing.record(webhook.id, success=True, now=now)
            status, code, took = DeliveryStatus.DELIVERED, result.status, result.duration_ms
            return [self._record(task, status, attempt, code, duration_ms=took, now=now)]
        outputs: list[Output] = []
        status = DeliveryStatus.DEAD_LETTERED
        next_retry: int | None = None  # epoch microseconds
        error = outcome.reason
        extra = {"attempts": str(attempt), "last-status": str(result.status)}
        if webhook is not None and self._failing.record(webhook.id, success=False, now=now):
            why = f"failing for {self._settings.delivery_disable_after}s without a success"
            outputs.extend(self._disable(webhook, why))
        if verdict is Verdict.RETRY:
            step = self._ladder.next_step(tier, now, outcome.retry_after)
            if step is None:
                error = f"retries exhausted after {attempt} attempts: {outcome.reason}"
                outputs.append(self._dead_letter(message, error, extra, task, now))
            else:
                status = DeliveryStatus.RETRYING
                next_retry = round(step.not_before * 1_000_000)
                outputs.append(
                    self._schedule(message, attempt, step.tier, step.not_before, result, state)
                )
        elif verdict is Verdict.DEAD_LETTER:
            outputs.append(self._dead_letter(message, outcome.reason, extra, task, now))
        elif verdict is Verdict.GONE:
            status = DeliveryStatus.DISABLED
            if webhook is not None:
                outputs.extend(self._disable(webhook, "endpoint answered 410 Gone"))
            why = f"{outcome.reason}; webhook disabled"
            outputs.append(self._dead_letter(message, why, extra, task, now))
        outputs.append(
            self._record(
                task, status, attempt, result.status, error, next_retry, result.duration_ms, now
            )
        )
        return outputs

    # -- outputs ----------------------------------------------------------------------------------

    def _schedule(
        self,
        message: Message,
        attempt: int,
        tier: int,
        not_before: float,
        result: AttemptResult,
        state: RetryState | None,
    ) -> Output:
        first = state if state is not None and state.original_topic else None
        retry = RetryState(
            attempts=attempt,
            not_before_ms=int(not_before * 1000),
            original_topic=first.original_topic if first else message.topic(),
            original_partition=first.original_partition if first else message.partition() or 0,
            original_offset=first.original_offset if first else message.offset() or 0,
            last_error=result.outcome.reason,
            last_status=result.status,
        )
        return Output(
            self._topics.retry(self._ladder.names[tier]),
            message.key(),
            message.value(),
            without_retry_headers(message_headers(message)) + retry.headers(),
        )

    def _dead_letter(
        self,
        message: Message,
        reason: str,
        extra: dict[str, str],
        task: DeliveryTaskJson | None = None,
        now: float | None = None,
    ) -> Output:
        if task is not None:
            extra = {
                **extra,
                "delivery-id": task.id,
                "webhook-id": task.webhook_id,
                "tenant-id": task.tenant_id,
                "event-id": task.event.id,
            }
        now = self._clock() if now is None else now
        headers = dead_letter_headers(message, reason, SOURCE, int(now * 1000), extra)
        log.info(
            "dead-lettering %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        return Output(self._topics.deliveries_dlt, message.key(), message.value(), headers)

    def _disable(self, webhook: Webhook, reason: str) -> list[Output]:
        """The webhook written back inactive, and the operational event that says so; nothing
        if it is inactive already (several of its attempts may fail at once, e.g. 410s)."""
        current = self._directory.get(webhook.id)
        if current is None or not current.active:
            return []
        log.warning("disabling webhook %s (tenant %s): %s", webhook.id, webhook.tenant_id, reason)
        # From the current version, so the write-back keeps changes made since the dispatch.
        disabled = current.updated(active=False)
        # Effective here at once: tasks already queued for this endpoint must not be sent
        # while our own write travels through the webhooks topic back into the view.
        self._directory.apply_local(disabled)
        config_topic = self._topics.webhooks
        config = self._serde.webhooks.encode(disabled, config_topic)
        event = Event.new(EventType.WEBHOOK_DISABLED, webhook.tenant_id).with_payload(
            {"webhook_id": webhook.id, "reason": reason}
        )
        event_topic = self._topics.for_event_type(event.type)
        return [
            Output(config_topic, webhook.id.encode(), config),
            # Keyed by tenant, like every event: a tenant's events keep their order.
            Output(
                event_topic,
                webhook.tenant_id.encode(),
                self._serde.events.encode(event, event_topic),
            ),
        ]

    def _record(
        self,
        task: DeliveryTaskJson,
        status: DeliveryStatus,
        attempts: int,
        status_code: int = 0,
        error: str | None = None,
        next_retry_micros: int | None = None,
        duration_ms: float = 0.0,
        now: float | None = None,
    ) -> Output:
        """The attempt record (``WebhookDelivery``) of ``task``, updated at ``now``."""
        now = self._clock() if now is None else now
        topic = self._topics.webhook_deliveries
        value = self._serde.attempt_record(
            topic,
            task,
            status,
            attempts,
            status_code,
            error,
            next_retry_micros,
            duration_ms,
            int(now * 1_000_000),
        )
        return Output(topic, task.id.encode(), value)

    def _produce(self, output: Output, outputs: Outputs) -> None:
        """Produce ``output``; ``outputs`` hears of its acknowledgement (on the loop thread)."""
        headers = output.headers
        outputs.add()
        while True:
            try:
                self._producer.produce(
                    output.topic,
                    key=output.key,
                    value=output.value,
                    headers=list(headers) if headers else None,
                    on_delivery=outputs,
                )
                return
            except BufferError:
                # The local queue is full: serve acknowledgements until there is room.
                self._producer.poll(0.01)

    def _on_refused(self, error: KafkaError, record: Message) -> None:
        """Kafka refused one of our outputs: the task stays unfinished; stop the worker."""
        if self._failure is None:
            topic = record.topic()
            log.error("delivery worker stopping: %s refused a record: %s", topic, error.str())
            self._failure = KafkaException(f"{topic}: {error.str()}")


def _no_response(verdict: Verdict, reason: str) -> AttemptResult:
    return AttemptResult(0, Outcome(verdict, reason), 0.0)
