"""The delivery worker: consumes tasks and retry tiers, posts them, and records every attempt.

Threads: asyncio runs the HTTP attempts; one executor thread owns the Kafka consumer (every
consumer call, and so every rebalance callback, happens there, in order); a thread polls the
producer for acknowledgements. A task's offset counts as done only once everything it produced
(attempt record, retry or dead letter) is acknowledged, and a partition's offset is committed
only below its lowest unfinished task: a crash redoes work, it never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from cpevents.kafka.clients import consumer_config, producer_config
from cpevents.kafka.deadletter import dead_letter_headers, message_headers
from cpevents.settings import Settings
from delivery.health import CircuitBreakers, FailureWindows
from delivery.offsets import PartitionProgress
from delivery.outcome import Outcome, Verdict
from delivery.registry import register_schemas
from delivery.retry_headers import RetryState, parse_retry_state, without_retry_headers
from delivery.schedule import RetryLadder
from delivery.sender import AttemptResult, Sender, endpoint_key
from delivery.signing import signature_headers
from delivery.webhooks import WebhookDirectory
from schemas.delivery import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.serde import DecodeError, Serde
from schemas.timestamps import utc_now
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

SOURCE = "delivery"
_COMMIT_INTERVAL = 0.2
_POLL_TIMEOUT = 0.05
_BATCH = 500

T = TypeVar("T")
PartitionKey = tuple[str, int]


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
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Partition state: shared with rebalance callbacks (consumer thread), hence the lock.
        self._lock = threading.Lock()
        self._progress: dict[PartitionKey, PartitionProgress] = {}
        self._held: dict[PartitionKey, float] = {}  # tier partitions paused until their head is due
        self._in_flight = 0
        self._throttled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._stopped = threading.Event()
        self._last_commit = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until ``stop`` is set, then finish or hand back in-flight work."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        register_schemas(self._serde, self._topics)
        self._directory = WebhookDirectory(self._settings, self._serde)
        await loop.run_in_executor(None, self._directory.start)
        self._producer = Producer(producer_config(self._settings))
        poller = threading.Thread(target=self._poll_producer, name="delivery-acks", daemon=True)
        poller.start()
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
                await self._consume(stop)
                await self._drain()
        finally:
            await self._shutdown()
            self._stopped.set()
            poller.join(timeout=5)
        if self._failure is not None:
            raise WorkerError(f"delivery worker failed: {self._failure}") from self._failure

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self._failure is None:
            await self._housekeeping()
            messages = await self._kafka(self._consumer.consume, _BATCH, _POLL_TIMEOUT)
            for message in messages:
                self._admit(message)

    async def _drain(self) -> None:
        # Graceful shutdown: give in-flight attempts their full timeout, then hand them back
        # (uncommitted, so the group redelivers them).
        pending = set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=self._settings.delivery_timeout + 5)
        for task in self._tasks:
            task.cancel()
        await self._commit(force=True)

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self._kafka(self._consumer.close)
        self._executor.shutdown(wait=True)
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 10)
        self._directory.stop()

    def _poll_producer(self) -> None:
        while not self._stopped.is_set():
            self._producer.poll(0.05)

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
            state = parse_retry_state(message_headers(message))
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
        task = asyncio.create_task(self._handle(message, tier, state, progress, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        now = self._clock()
        with self._lock:
            due = [key for key, at in self._held.items() if at <= now]
            for key in due:
                del self._held[key]
            assigned = list(self._progress)
            over = self._in_flight >= self._settings.delivery_concurrency
            under = self._in_flight <= self._settings.delivery_concurrency // 2
            held = set(self._held)
        if due and not self._throttled:
            self._kafka_later(self._consumer.resume, [TopicPartition(t, p) for t, p in due])
        if over and not self._throttled:
            self._throttled = True
            self._kafka_later(self._consumer.pause, [TopicPartition(t, p) for t, p in assigned])
        elif self._throttled and under:
            self._throttled = False
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

    async def _handle(
        self,
        message: Message,
        tier: int,
        state: RetryState,
        progress: PartitionProgress,
        offset: int,
    ) -> None:
        try:
            await self._deliver(message, tier, state)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Only Kafka refusing our output gets here; the task stays unfinished so that its
            # offset is never committed, and the worker stops to be restarted.
            log.exception("delivery worker stopping")
            self._failure = exc
            return
        with self._lock:
            progress.finish(offset)
            self._in_flight -= 1

    async def _deliver(self, message: Message, tier: int, state: RetryState) -> None:
        try:
            task = self._serde.tasks.decode(message.value(), message.topic() or "")
        except DecodeError as exc:
            await self._dead_letter(message, f"undecodable delivery task: {exc.reason}", {})
            return
        webhook = await self._directory.lookup(task.webhook_id)
        if webhook is None or not webhook.active:
            why = "webhook deleted" if webhook is None else "webhook inactive"
            log.info("dropping delivery %s: %s", task.id, why)
            await self._record(task, DeliveryStatus.DISABLED, state.attempts, error=why)
            return
        attempt = state.attempts + 1
        try:
            secrets = self._directory.secrets(webhook)
        except ValueError as exc:
            await self._finish(message, task, attempt, _no_response(Verdict.DEAD_LETTER, str(exc)))
            return
        if not secrets:
            reason = "webhook has no active signing secret"
            await self._finish(message, task, attempt, _no_response(Verdict.DEAD_LETTER, reason))
            return
        result = await self._attempt(task, webhook, secrets)
        await self._finish(message, task, attempt, result, tier, state, webhook)

    async def _attempt(
        self, task: DeliveryTask, webhook: Webhook, secrets: list[str]
    ) -> AttemptResult:
        endpoint = endpoint_key(webhook.url)
        slot = self._slots.setdefault(
            endpoint, asyncio.Semaphore(self._settings.delivery_per_endpoint_limit)
        )
        async with slot:
            if not self._breakers.allow(endpoint, self._clock()):
                return _no_response(Verdict.RETRY, "circuit open: endpoint keeps failing")
            body = task.event.to_json().encode()
            headers = signature_headers(task.event.id, int(self._clock()), body, secrets)
            result = await self._sender.post(webhook.url, body, headers)
        failed = result.outcome.verdict is Verdict.RETRY
        self._breakers.record(endpoint, success=not failed, now=self._clock())
        return result

    async def _finish(
        self,
        message: Message,
        task: DeliveryTask,
        attempt: int,
        result: AttemptResult,
        tier: int = -1,
        state: RetryState | None = None,
        webhook: Webhook | None = None,
    ) -> None:
        outcome = result.outcome
        verdict = outcome.verdict
        pending: list[asyncio.Future[None]] = []
        status = DeliveryStatus.DELIVERED
        next_retry: datetime | None = None
        error: str | None = None if verdict is Verdict.DELIVERED else outcome.reason
        extra = {"attempts": str(attempt), "last-status": str(result.status)}
        if webhook is not None and verdict is not Verdict.DELIVERED:
            if self._failing.record(webhook.id, success=False, now=self._clock()):
                log.warning(
                    "disabling webhook %s (tenant %s): failing for %ss without a success",
                    webhook.id,
                    webhook.tenant_id,
                    self._settings.delivery_disable_after,
                )
                pending.append(self._disable(webhook))
        elif webhook is not None:
            self._failing.record(webhook.id, success=True, now=self._clock())
        if verdict is Verdict.RETRY:
            step = self._ladder.next_step(tier, self._clock(), outcome.retry_after)
            if step is None:
                status = DeliveryStatus.DEAD_LETTERED
                error = f"retries exhausted after {attempt} attempts: {outcome.reason}"
                pending.append(self._dead_letter_future(message, error, extra, task))
            else:
                status = DeliveryStatus.RETRYING
                next_retry = datetime.fromtimestamp(step.not_before, UTC)
                pending.append(
                    self._schedule(message, attempt, step.tier, step.not_before, result, state)
                )
        elif verdict is Verdict.DEAD_LETTER:
            status = DeliveryStatus.DEAD_LETTERED
            pending.append(self._dead_letter_future(message, outcome.reason, extra, task))
        elif verdict is Verdict.GONE:
            status = DeliveryStatus.DISABLED
            if webhook is not None:
                log.warning("disabling webhook %s: endpoint answered 410 Gone", webhook.id)
                pending.append(self._disable(webhook))
            pending.append(
                self._dead_letter_future(
                    message, f"{outcome.reason}; webhook disabled", extra, task
                )
            )
        pending.append(
            self._record_future(
                task, status, attempt, result.status, error, next_retry, result.duration_ms
            )
        )
        await asyncio.gather(*pending)

    # -- outputs ----------------------------------------------------------------------------------

    def _schedule(
        self,
        message: Message,
        attempt: int,
        tier: int,
        not_before: float,
        result: AttemptResult,
        state: RetryState | None,
    ) -> asyncio.Future[None]:
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
        return self._produce(
            self._topics.retry(self._ladder.names[tier]),
            message.key(),
            message.value(),
            without_retry_headers(message_headers(message)) + retry.headers(),
        )

    def _dead_letter_future(
        self,
        message: Message,
        reason: str,
        extra: dict[str, str],
        task: DeliveryTask | None = None,
    ) -> asyncio.Future[None]:
        if task is not None:
            extra = {
                **extra,
                "delivery-id": task.id,
                "webhook-id": task.webhook_id,
                "tenant-id": task.tenant_id,
                "event-id": task.event.id,
            }
        headers = dead_letter_headers(message, reason, SOURCE, int(self._clock() * 1000), extra)
        log.info(
            "dead-lettering %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        return self._produce(self._topics.deliveries_dlt, message.key(), message.value(), headers)

    async def _dead_letter(self, message: Message, reason: str, extra: dict[str, str]) -> None:
        await self._dead_letter_future(message, reason, extra)

    def _disable(self, webhook: Webhook) -> asyncio.Future[None]:
        disabled = webhook.updated(active=False)
        topic = self._topics.webhooks
        return self._produce(
            topic, webhook.id.encode(), self._serde.webhooks.encode(disabled, topic), []
        )

    def _record_future(
        self,
        task: DeliveryTask,
        status: DeliveryStatus,
        attempts: int,
        status_code: int = 0,
        error: str | None = None,
        next_retry: datetime | None = None,
        duration_ms: float = 0.0,
    ) -> asyncio.Future[None]:
        record = WebhookDelivery(
            id=task.id,
            webhook_id=task.webhook_id,
            event_id=task.event.id,
            tenant_id=task.tenant_id,
            status=status,
            attempts=attempts,
            status_code=status_code,
            next_retry=next_retry,
            error=error,
            duration_ms=duration_ms,
            created_at=task.created_at,
            updated_at=utc_now(),
        )
        topic = self._topics.webhook_deliveries
        return self._produce(
            topic, task.id.encode(), self._serde.deliveries.encode(record, topic), []
        )

    async def _record(
        self, task: DeliveryTask, status: DeliveryStatus, attempts: int, error: str
    ) -> None:
        await self._record_future(task, status, attempts, error=error)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, str | bytes | None]],
    ) -> asyncio.Future[None]:
        """Produce, returning a future that resolves once Kafka acknowledged the record."""
        loop = self._loop
        future: asyncio.Future[None] = loop.create_future()

        def settle(error: KafkaError | None, _message: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, topic, error)

        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=value, headers=list(headers), on_delivery=settle
                )
                return future
            except BufferError:
                # The local queue is full: let the ack thread drain it.
                time.sleep(0.001)


def _settle(future: asyncio.Future[None], topic: str, error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(f"{topic}: {error.str()}"))


def _no_response(verdict: Verdict, reason: str) -> AttemptResult:
    return AttemptResult(0, Outcome(verdict, reason), 0.0)
