"""The durable bus: events on their subsystem topics, subscriptions as consumer groups.

Publishing: Avro (Confluent wire format) to ``<prefix>events.<subsystem>``, key = tenant id,
acks=all and idempotence; ``publish`` returns once Kafka acknowledged.

Subscribing: each subscription is a consumer group named after it, so a restarted process
resumes where the subscription stopped. Offsets are committed only after the handler returned
(or the event was parked), so nothing is lost; a handler that keeps failing is retried with
backoff and then parked in ``<prefix>bus.dlt`` with the error, so it never holds its partition
forever. Records that cannot be decoded are parked there too.

Limits: an event whose encoding exceeds ``CPEVENTS_MAX_EVENT_BYTES`` is refused before anything
of its batch is sent (:class:`~plumbing.limits.EventTooLarge`, naming ``payload``).

Crash-only subscriptions: anything else that goes wrong in a subscription (a poll that raises,
a fatal consumer error) is logged at ERROR with the reason, its consumer is closed, and it
restarts after an exponential backoff (:class:`RestartPolicy`), resuming from the group's
committed offsets, so nothing is skipped and a subscription never ends silently. ``error`` on
the subscription says why it is restarting; ``restarts`` counts the restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from plumbing import tracing
from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.clients import consume_available, consumer_config, producer_config
from plumbing.kafka.deadletter import dead_letter_headers
from plumbing.kafka.produce import PublishError, Record
from plumbing.limits import EventTooLarge, check_event_size
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.bus import Handler, Subscription, handler_name, parse_types
from producers.observability import producer_metrics, traced_publish
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import DecodeError, Serde

log = logging.getLogger(__name__)

__all__ = ["EventTooLarge", "KafkaBus", "PublishError", "RestartPolicy", "RetryPolicy"]

# Makes a subscription's consumer from its configuration: a seam for tests (a failing consumer).
ConsumerFactory = Callable[[dict[str, Any]], Consumer]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing handler is retried before its event is parked.

    The whole schedule must stay well below the consumer's ``max.poll.interval.ms`` (5 min by
    default), since the partition is not polled while an event is being retried.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("initial_backoff/max_backoff: need 0 <= initial <= max")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class RestartPolicy:
    """How long a failed subscription waits before restarting: ``initial_backoff`` doubled per
    failure in a row, at most ``max_backoff`` seconds (a successful poll resets the count)."""

    initial_backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_backoff <= 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("initial_backoff/max_backoff: need 0 < initial <= max")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** min(failures - 1, 30)))


class _Stopping(Exception):
    """The subscription stopped while an event was still unfinished (it will be redelivered)."""


class KafkaBus:
    """A Bus on Kafka. Create it inside a running event loop; ``await close()`` when done."""

    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        retry: RetryPolicy | None = None,
        *,
        restart: RestartPolicy | None = None,
        consumer_factory: ConsumerFactory = Consumer,
    ) -> None:
        self._settings = settings
        self._serde = serde or serde_for(settings)
        self._retry = retry or RetryPolicy()
        self._restart = restart or RestartPolicy()
        self._consumer_factory = consumer_factory
        self._max_event_bytes = settings.max_event_bytes
        self._producer = AsyncProducer(producer_config(settings))
        self._topic_of: dict[EventType, str] = {}  # filled once each type's schema is registered
        self._subscriptions: list[_KafkaSubscription] = []
        self._closed = False
        self._published = producer_metrics().published
        # publish() returns the events, never where they were stored: acknowledgements only.
        self._send_counted = functools.partial(self._producer.send_batch, positions=False)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Write ``event`` to its subsystem topic; return once Kafka acknowledged it.

        Raises EventTooLarge (field ``payload``) if its encoding exceeds the limit.
        """
        await self._publish([event], "")

    async def publish_many(self, events: Iterable[Event]) -> list[Event]:
        """Write ``events`` in one batch; return them once Kafka acknowledged every one.

        Raises PublishError if any failed (others of the batch may be stored: at least once);
        EventTooLarge (field ``[i].payload``) if one encodes over the limit, before anything
        of the batch is sent.
        """
        return await self._publish(list(events), None)

    async def _publish(self, batch: list[Event], prefix: str | None) -> list[Event]:
        """``prefix`` locates a too-large event in error messages; None: ``[i].``."""
        if self._closed:
            raise PublishError("bus is closed")
        encode = self._serde.events.encode
        limit = self._max_event_bytes
        records = []
        for index, event in enumerate(batch):
            topic = self._topic_of.get(event.type)
            if topic is None:
                # The first encoding per topic may talk to the registry over HTTP: off the loop.
                topic = self._settings.topics.for_event_type(event.type)
                value = await asyncio.to_thread(encode, event, topic)
                self._topic_of[event.type] = topic
            else:
                value = encode(event, topic)
            if len(value) > limit:  # the bytes exist already: one comparison per event
                check_event_size(value, limit, f"[{index}]." if prefix is None else prefix)
            records.append(Record(topic, event.tenant_id.encode(), value))
        if tracing.enabled:  # a producer span, child of the caller's current span
            await traced_publish(self._send_counted, records)
        else:
            await self._send_counted(records)
        self._published.inc(len(records))
        return batch

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(
        self, handler: Handler, *types: EventType | str, name: str | None = None
    ) -> Subscription:
        """Consume events of ``types`` (none: every type) in consumer group ``name``.

        ``name`` defaults to the handler's module and qualified name; keep it stable across
        restarts to resume where the subscription stopped. A new name reads the retained
        history of its topics from the beginning.
        """
        if self._closed:
            raise PublishError("bus is closed")
        wanted = parse_types(types)
        subscription = _KafkaSubscription(
            self, name or handler_name(handler), wanted, handler, asyncio.get_running_loop()
        )
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        """Stop every subscription (committing what was handled), then flush the producer."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.unsubscribe()
        await asyncio.gather(*(s.stopped() for s in self._subscriptions))
        await self._producer.close()

    # -- used by subscriptions ---------------------------------------------------------------

    def _topics_for(self, types: frozenset[EventType]) -> list[str]:
        topics = self._settings.topics
        if not types:
            return topics.all_events
        return sorted({topics.for_event_type(t) for t in types})


class _KafkaSubscription(Subscription):
    """One consumer group feeding one handler, run as an asyncio task."""

    def __init__(
        self,
        bus: KafkaBus,
        name: str,
        types: frozenset[EventType],
        handler: Handler,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(name, types, on_unsubscribe=self._request_stop)
        self._bus = bus
        self._handler = handler
        self._settings = bus._settings
        self._stop_requested = asyncio.Event()
        self._error: str | None = None
        self._polled_ok = False
        #: How often the subscription restarted after a failure.
        self.restarts = 0
        self._task = loop.create_task(self._run(), name=f"bus-subscription:{name}")

    def _request_stop(self) -> None:
        self._stop_requested.set()

    async def stopped(self) -> None:
        """Wait until the consumer committed its progress and left its group."""
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def error(self) -> str | None:
        """Why the subscription is restarting (its last failure), or None while it consumes."""
        return self._error

    async def _run(self) -> None:
        failures = 0
        while not self._stop_requested.is_set():
            try:
                await self._consume()
                return  # asked to stop
            except Exception as exc:
                # A poll that succeeded since the last failure starts the backoff afresh.
                failures = 1 if self._polled_ok else failures + 1
                self._polled_ok = False
                delay = self._bus._restart.backoff(failures)
                self._error = f"{type(exc).__name__}: {exc}"
                self.restarts += 1
                log.error(
                    "subscription %s failed (%s); restarting in %.1fs (failure %d in a row)",
                    self.name,
                    self._error,
                    delay,
                    failures,
                    exc_info=exc,
                )
                try:
                    await self._pause(delay)
                except _Stopping:
                    return

    async def _consume(self) -> None:
        """Consume until asked to stop; raises on any failure (``_run`` restarts it)."""
        group = f"{self._settings.topic_prefix}bus.{self.name}"
        consumer = self._bus._consumer_factory(consumer_config(self._settings, group))
        try:
            consumer.subscribe(self._bus._topics_for(self.types))
            while not self._stop_requested.is_set():
                messages = await asyncio.to_thread(consume_available, consumer, 200, 0.2)
                if self._error is not None:
                    log.warning(
                        "subscription %s consuming again (after: %s)", self.name, self._error
                    )
                    self._error = None
                self._polled_ok = True
                done: dict[tuple[str, int], int] = {}
                try:
                    for message in messages:
                        if self._stop_requested.is_set():
                            break
                        await self._process(message)
                        done[(message.topic() or "", message.partition() or 0)] = (
                            message.offset() or 0
                        ) + 1
                except _Stopping:
                    pass
                finally:
                    if done:
                        await asyncio.to_thread(self._commit, consumer, done)
        finally:
            await asyncio.to_thread(self._close_quietly, consumer)

    def _close_quietly(self, consumer: Consumer) -> None:
        try:
            consumer.close()
        except Exception as exc:  # a broken consumer may fail to close; it is dropped anyway
            log.warning("subscription %s: closing its consumer failed: %s", self.name, exc)

    def _commit(self, consumer: Consumer, done: dict[tuple[str, int], int]) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in done.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partitions away: their new owner redelivers.
            log.warning("subscription %s could not commit %s: %s", self.name, offsets, exc)

    async def _process(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF or error.retriable():
                return
            raise KafkaException(error)
        topic = message.topic() or ""
        try:
            event = self._bus._serde.events.decode(message.value(), topic)
        except DecodeError as exc:
            await self._park(message, f"undecodable: {exc.reason}")
            return
        if not self.matches(event.type):
            return
        policy = self._bus._retry
        for attempt in range(1, policy.max_attempts + 1):
            try:
                await self._handler(event)
                return
            except Exception as exc:
                reason = f"handler failed: {type(exc).__name__}: {exc}"
                log.warning(
                    "subscription %s: attempt %d/%d on event %s failed: %s",
                    self.name,
                    attempt,
                    policy.max_attempts,
                    event.id,
                    reason,
                )
                if attempt == policy.max_attempts:
                    await self._park(message, f"{reason} (after {attempt} attempts)")
                    return
                await self._pause(policy.backoff(attempt))

    async def _pause(self, seconds: float) -> None:
        """Back off, but give up at once (leaving the event uncommitted) if asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
            raise _Stopping

    async def _park(self, message: Message, reason: str) -> None:
        """Write ``message`` to the bus dead-letter topic; retried until stored or stopping."""
        headers = dead_letter_headers(
            message,
            reason,
            source="bus",
            failed_at_ms=int(time.time() * 1000),
            extra={"subscription": self.name},
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._bus._producer.send(
                    self._settings.topics.bus_dlt, message.key(), message.value(), headers
                )
                return
            except PublishError as exc:
                log.error("subscription %s: dead-lettering failed: %s", self.name, exc)
                await self._pause(self._bus._retry.backoff(min(attempt, 6)))
