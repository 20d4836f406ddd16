"""The delivery worker: consumes tasks and retry tiers, posts them, and records every attempt.

The wiring of the parts: :class:`~delivery.partitions.PartitionBook` (what is in flight,
held, paused, and what to commit), :class:`~delivery.dispatch.Dispatcher` (where an admitted
task goes) with its :class:`~delivery.lanes.Lanes` (per-endpoint queues posting through an
:class:`~delivery.transport.AsyncTransport`), :class:`~delivery.planner.DeliveryPlanner` (what
each task leaves behind), :class:`~delivery.settle.Settler` (producing it, and dead-lettering a
task whose output is too large) and :class:`~delivery.consumer_thread.ConsumerThread`.

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
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from delivery.config import DeliveryConfig
from delivery.consumer_thread import ConsumerThread
from delivery.dispatch import Dispatcher
from delivery.gctune import steady_state_gc
from delivery.lanes import Job
from delivery.metrics import worker_metrics
from delivery.partitions import PartitionBook
from delivery.planner import SOURCE, DeliveryPlanner
from delivery.retry_headers import parse_retry_state
from delivery.schema_setup import register_schemas
from delivery.sender import Sender
from delivery.settle import Settler
from delivery.trace import finish_attempt_spans, prepare_attempt_spans
from delivery.transport import AsyncTransport
from delivery.webhooks import WebhookDirectory
from plumbing import tracing
from plumbing.kafka.clients import consume_available, consumer_config, producer_config
from plumbing.lean_spans import LeanSpan
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.serde import Serde

__all__ = ["SOURCE", "DeliveryWorker", "WorkerError", "group_id"]

log = logging.getLogger(__name__)

_COMMIT_INTERVAL = 0.2
_POLL_TIMEOUT = 0.05
_BATCH = 500
# Records admitted between two turns of the event loop: a whole batch at once would hold up
# every request in flight (e.g. a burst of retries coming due) for tens of milliseconds.
_ADMIT_SLICE = 64
# How often the loop writes the outputs of finished attempts and serves producer
# acknowledgements (seconds).
_ACK_INTERVAL = 0.005
# With nothing in flight and nothing unacknowledged there is nothing to settle: the pass then
# waits for the next admitted record (or this long), so an idle worker does not wake 200 times
# a second.
_IDLE_ACK_INTERVAL = 0.5
# At the in-flight limit, wait this long for room before pausing every partition: pausing
# drops librdkafka's prefetched records, so it is kept for endpoints that stay slow.
_ROOM_WAIT = 0.5


def group_id(settings: Settings) -> str:
    """The consumer group of the delivery workers (per topic prefix)."""
    return f"{settings.topic_prefix}delivery"


class WorkerError(RuntimeError):
    """The worker cannot go on (Kafka refused to store its output); restart it."""


class DeliveryWorker:
    """Delivers tasks from ``deliveries`` and every retry tier until ``stop`` is set.

    ``serde`` may be shared with the caller (an in-process mock registry must be);
    ``transport`` replaces the HTTP sender (default: :class:`~delivery.sender.Sender`).
    """

    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        clock: Callable[[], float] = time.time,
        transport: AsyncTransport | None = None,
    ) -> None:
        self._settings = settings
        self._config = config = DeliveryConfig.from_settings(settings)
        self._serde = serde = serde or serde_for(settings)
        self._clock = clock
        self._topics = topics = settings.topics
        # Topic -> the retry tier it is; None for the deliveries topic (fresh tasks).
        self._tier_of: dict[str, int | None] = {topics.deliveries: None}
        self._tier_of.update({topics.retry(name): i for i, name in enumerate(config.retry_tiers)})
        self._last_tier = len(config.retry_tiers) - 1
        self._tasks: set[asyncio.Task[None]] = set()  # lane runners and webhook catch-ups
        self._failure: BaseException | None = None
        self._last_commit = 0.0
        self._admitted = asyncio.Event()  # set when records are admitted: wakes an idle ack pass
        self._partitions = PartitionBook(config.concurrency, _BATCH)
        self._directory = WebhookDirectory(settings, serde)
        self._planner = DeliveryPlanner(config, topics, serde, self._directory)
        self._transport = transport or Sender(config)
        self._producer = Producer(producer_config(settings))
        self._settler = Settler(
            self._producer, self._planner, self._partitions.done, self._fail, clock
        )
        self._settle = self._settler.settle  # bound once: called for every task
        self._dispatcher = Dispatcher(
            config,
            serde,
            self._directory,
            self._planner,
            self._partitions,
            self._transport,
            clock,
            settle=self._settle,
            spawn=self._spawn,
            fail=self._fail,
            failed=lambda: self._failure is not None,
        )
        self._lanes = self._dispatcher.lanes
        self._route = self._dispatcher.route  # bound once: called for every record
        # Counted in the settle pass; queues, breakers and in-flight read when scraped.
        self._metrics = worker_metrics(settings, self._lanes, self._partitions)
        self._tally = self._metrics.tally(self._planner.dead_letter_topic, topics.webhooks, clock)
        consumer = Consumer(
            consumer_config(
                settings,
                group_id(settings),
                **{
                    "client.id": f"delivery-{uuid.uuid4().hex[:8]}",
                    "fetch.wait.max.ms": 50,
                    "session.timeout.ms": int(config.session_timeout * 1000),
                    # Partition p of every topic (deliveries and each tier, all keyed by webhook
                    # id with the same partition count) goes to the same worker: one rate-limit
                    # bucket per webhook then covers fresh tasks, retries and redrives alike.
                    "partition.assignment.strategy": "range",
                },
            )
        )
        self._consumer = ConsumerThread(consumer, "delivery-consumer")

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until ``stop`` is set, then finish or hand back in-flight work."""
        try:
            register_schemas(self._serde, self._topics)
            await asyncio.get_running_loop().run_in_executor(None, self._directory.start)
            # A wrong key would dead-letter every task: refuse to start instead.
            self._directory.check_secret_key()
            acks = asyncio.create_task(self._serve_acks())
            await self._consumer.call(
                self._consumer.consumer.subscribe,
                list(self._tier_of),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            try:
                async with self._transport:
                    with steady_state_gc():
                        await self._consume(stop)
                        await self._drain()
            finally:
                acks.cancel()
        finally:
            await self._shutdown()
        if self._failure is not None:
            raise WorkerError(f"delivery worker failed: {self._failure}") from self._failure

    async def _consume(self, stop: asyncio.Event) -> None:
        limit, partitions, consumer = self._config.concurrency, self._partitions, self._consumer
        while not stop.is_set() and self._failure is None:
            await self._housekeeping()
            room = limit - partitions.in_flight
            if room <= 0 and not partitions.throttled:
                # Usually room comes back within milliseconds; records stay prefetched meanwhile.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(partitions.room.wait(), _ROOM_WAIT)
                if not partitions.room.is_set():
                    consumer.call_later(consumer.consumer.pause, partitions.throttle())
                continue
            # Never take more than there is room for, so the limit holds without pausing.
            batch = min(_BATCH, max(room, 1))
            messages = await consumer.call(
                consume_available, consumer.consumer, batch, _POLL_TIMEOUT
            )
            if messages:
                self._admitted.set()
            # Traced: each record's attempt span is made here, for the batch in one pass.
            spans = prepare_attempt_spans(messages) if tracing.enabled else None
            for n, message in enumerate(messages, 1):
                self._admit(message, None if spans is None else spans[n - 1])
                if n % _ADMIT_SLICE == 0:
                    await asyncio.sleep(0)  # let finished requests move on meanwhile

    async def _drain(self) -> None:
        # Graceful shutdown: give in-flight attempts their full timeout, then hand them back
        # (uncommitted, so the group redelivers them); wait for the outputs of finished ones.
        deadline = time.monotonic() + self._config.timeout + 5
        # Runners keep taking their lane's queued jobs; a catch-up may start a runner meanwhile.
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        self._settle_attempts()
        # Acknowledgements arrive by polling (``_serve_acks``): there is no event to wait on.
        while len(self._producer) and self._failure is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_ACK_INTERVAL)
        await self._commit(force=True)

    async def _shutdown(self) -> None:
        await self._consumer.close()
        # Any output still unacknowledged belongs to a task whose offset stays uncommitted.
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 10)
        self._directory.stop()

    async def _serve_acks(self) -> None:
        """Write the outputs of finished attempts, and run producer delivery callbacks on the
        loop (so they touch worker state directly)."""
        producer, partitions, admitted = self._producer, self._partitions, self._admitted
        while True:
            self._settle_attempts()
            producer.poll(0)
            if partitions.in_flight or len(producer) or self._lanes.attempted:
                await asyncio.sleep(_ACK_INTERVAL)
                continue
            admitted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(admitted.wait(), _IDLE_ACK_INTERVAL)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rebalancing (runs on the consumer thread, inside consume) --------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._partitions.assign(partitions):
            # New partitions join the others' pause until there is room again.
            consumer.pause(partitions)
        else:
            # librdkafka remembers pause state across assignments; start every partition running.
            consumer.resume(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        offsets = self._partitions.forget(partitions)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._partitions.forget(partitions)

    # -- the poll loop ----------------------------------------------------------------------------

    def _admit(self, message: Message, span: LeanSpan | None) -> None:
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
        tier = self._tier_of[topic]
        state = parse_retry_state(message.headers())
        if tier is not None:
            if (due := state.not_before_ms / 1000) > self._clock():
                self._hold(topic, partition, offset, due)
                return
            if state.ladder_tier is not None:  # parked here by a deferral: its ladder tier
                tier = min(state.ladder_tier, self._last_tier) if state.ladder_tier >= 0 else None
        progress = self._partitions.start(key, offset)
        if progress is None:
            return  # revoked, or behind a held head (re-read after the seek)
        try:
            self._route(Job(message, tier, state, progress, offset, span=span))
        except Exception as exc:  # a bug, not a record's fault: keep the offset, stop the worker
            self._fail(exc)

    def _hold(self, topic: str, partition: int, offset: int, due: float) -> None:
        """Not due: pause the partition and rewind to this record; it is read again once the
        partition resumes at its due time. Polling goes on meanwhile."""
        if self._partitions.hold((topic, partition), due):
            consumer = self._consumer
            consumer.call_later(consumer.consumer.pause, [TopicPartition(topic, partition)])
            consumer.call_later(consumer.consumer.seek, TopicPartition(topic, partition, offset))

    async def _housekeeping(self) -> None:
        now = self._clock()
        self._dispatcher.shed_stuck_lanes(now)
        held_due, running = self._partitions.to_resume(now)
        for partitions in (held_due, running):
            if partitions:
                self._consumer.call_later(self._consumer.consumer.resume, partitions)
        await self._commit()

    async def _commit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < _COMMIT_INTERVAL:
            return
        self._last_commit = now
        offsets = self._partitions.to_commit()
        if offsets:
            try:
                await self._consumer.call(
                    self._consumer.consumer.commit, offsets=offsets, asynchronous=not force
                )
            except KafkaException as exc:
                log.warning("commit failed (will retry): %s", exc)

    # -- outputs ----------------------------------------------------------------------------------

    def _settle_attempts(self) -> None:
        """Produce the records of every attempt finished since the last pass."""
        lanes = self._lanes
        if not lanes.attempted:
            return
        attempted, lanes.attempted = lanes.attempted, []
        finish_attempt_spans(attempted)
        after_attempt, clock, tally = self._planner.after_attempt, self._clock, self._tally
        for job, result in attempted:
            task, webhook = job.task, job.webhook
            assert task is not None and webhook is not None
            try:
                records = after_attempt(
                    job.message, task, result, job.tier, job.state, webhook, clock()
                )
                self._settle(job, records)
                tally.add(job, result, records)
            except Exception as exc:  # Kafka refused a record, or a bug
                self._fail(exc)
        tally.flush()  # one counter update per outcome and status class per pass

    def _fail(self, exc: BaseException) -> None:
        """Kafka refused our output for good (or a bug): stop the worker, to be restarted."""
        log.error("delivery worker stopping", exc_info=exc)
        if self._failure is None:
            self._failure = exc
