"""A live, in-memory view of a compacted topic (latest value per key), read from every partition.

Used wherever a component needs the whole of a small keyed data set: the webhook configs
(router, delivery, gateway), the attempt log (gateway) and the registry's ``_schemas``. It reads
without a consumer group, so every process sees every partition, and it tails the topic in a
background thread so that sync and asyncio code can both use it.

Crash-only: when the reader thread meets an unexpected error (a poll that raises, a fatal
consumer error, a listener that fails) it does not stop and leave the data frozen. It closes its
consumer, waits with exponential backoff and resumes from the offsets it had applied, and while
it does ``healthy`` is False and ``error`` says why, so a health check can report it (the
gateway's ``/healthz`` answers 503 naming the view) and an orchestrator can restart the process
if it never recovers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from plumbing.kafka.clients import consume_available, consumer_config
from plumbing.settings import Settings

log = logging.getLogger(__name__)

V = TypeVar("V")

# decode(message) -> (key, value); value None means "delete the key" (a tombstone).
Decoder = Callable[[Message], tuple[str, V | None]]
Listener = Callable[[str, V | None, V | None], None]
# Makes the view's consumer from its configuration: a seam for tests (a consumer that fails).
ConsumerFactory = Callable[[dict[str, Any]], Consumer]

# Backoff between restarts of a failing reader: short at first, at most half a minute.
_RESTART_INITIAL_S = 0.2
_RESTART_MAX_S = 30.0


class ViewError(RuntimeError):
    """The view could not read its topic."""


# What a partition answers for a moment after its topic was created or its leader moved; the
# client does not always flag these as retriable when they come from a watermark query.
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _high_watermark(consumer: Consumer, partition: TopicPartition, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            return int(high)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in _TRANSIENT
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class CompactedTopicView(Generic[V]):
    """Latest value per key of ``topic``. Start it, await ``wait_until_caught_up``, then read.

    ``on_change(key, old, new)`` listeners run on the view's thread, in topic order, after the
    view's dict is updated. Records the decoder rejects (it raises ValueError) are passed to
    ``on_error`` and skipped: a bad record never stops the view. Any other error restarts the
    reader (see the module doc); ``healthy`` and ``error`` tell whether it is reading.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        decode: Decoder[V],
        on_error: Callable[[Message, Exception], None] | None = None,
        poll_interval: float = 0.1,
        consumer_factory: ConsumerFactory = Consumer,
        restart_backoff: tuple[float, float] = (_RESTART_INITIAL_S, _RESTART_MAX_S),
    ) -> None:
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._restart_backoff = restart_backoff
        self._error: str | None = None
        self._failures_in_row = 0
        #: How often the reader restarted after a failure.
        self.restarts = 0
        self.topic = topic
        self._decode = decode
        self._on_error = on_error
        self._poll_interval = poll_interval
        self._data: dict[str, V] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener[V]] = []
        self._positions: dict[int, int] = {}
        self._progress = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._targets: dict[int, int] = {}
        self._assigned: list[TopicPartition] = []  # every partition of the topic, no offsets

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> V | None:
        with self._lock:
            return self._data.get(key)

    def snapshot(self) -> dict[str, V]:
        """A copy of the whole view."""
        with self._lock:
            return dict(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def position(self, partition: int) -> int:
        """The offset up to which ``partition`` is applied (every record before it is)."""
        with self._lock:
            return self._positions.get(partition, 0)

    @property
    def healthy(self) -> bool:
        """False while the reader is failing (restarting with backoff) or has stopped on a
        fatal error; the data is then possibly stale."""
        with self._lock:
            return self._error is None and self._failure is None

    @property
    def error(self) -> str | None:
        """Why the view is unhealthy (the last error), or None."""
        with self._lock:
            if self._failure is not None:
                return f"stopped: {self._failure!r}"
            return self._error

    def add_listener(self, listener: Listener[V]) -> None:
        """Call ``listener(key, old, new)`` for every later change."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> CompactedTopicView[V]:
        """Begin reading from the start of every partition in a background thread."""
        consumer = self._new_consumer()
        metadata = consumer.list_topics(self.topic, timeout=30)
        topic_meta = metadata.topics.get(self.topic)
        if topic_meta is None or topic_meta.error is not None:
            consumer.close()
            raise ViewError(
                f"topic {self.topic} is not available: {topic_meta and topic_meta.error}"
            )
        partitions = sorted(topic_meta.partitions)
        for partition in partitions:
            high = _high_watermark(consumer, TopicPartition(self.topic, partition))
            self._targets[partition] = high
            self._positions[partition] = 0
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self._assigned = [TopicPartition(self.topic, p) for p in partitions]
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name=f"view:{self.topic}", daemon=True
        )
        self._thread.start()
        return self

    def _new_consumer(self) -> Consumer:
        return self._consumer_factory(
            consumer_config(
                self._settings,
                f"view-{uuid.uuid4().hex}",  # required by librdkafka; never used (no commits)
                **{"enable.partition.eof": False, "fetch.wait.max.ms": 50},
            )
        )

    def stop(self) -> None:
        """Stop the reader thread (the data stays readable, no longer updated)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_until_caught_up(self, timeout: float = 30.0) -> None:
        """Block until every record that existed when ``start`` ran has been applied."""
        self._wait(dict(self._targets), timeout)

    def wait_for(self, partition: int, offset: int, timeout: float = 30.0) -> None:
        """Block until the record at (``partition``, ``offset``) is applied (read-your-writes)."""
        self._wait({partition: offset + 1}, timeout)

    def _wait(self, targets: dict[int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._progress:
            while True:
                if self._failure is not None:
                    raise ViewError(f"view of {self.topic} failed: {self._failure}")
                if all(self._positions.get(p, 0) >= target for p, target in targets.items()):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failing = f" (reader failing: {self._error})" if self._error else ""
                    raise TimeoutError(
                        f"view of {self.topic} did not reach {targets} in time{failing}"
                    )
                self._progress.wait(remaining)

    # -- the reader thread ---------------------------------------------------------------------

    def _run(self, consumer: Consumer | None) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if consumer is None:
                        consumer = self._resumed_consumer()
                    self._read(consumer)
                except Exception as exc:
                    self._close_quietly(consumer)
                    consumer = None
                    if self._stop.wait(self._fail(exc)):
                        return
                else:
                    return  # stopped
        except BaseException as exc:  # surfaced to waiters; the thread must not die silently
            with self._progress:
                self._failure = exc
                self._progress.notify_all()
        finally:
            self._close_quietly(consumer)

    def _fail(self, exc: Exception) -> float:
        """Record why the reader failed; return how long to wait before restarting it."""
        self._failures_in_row += 1
        failures = self._failures_in_row
        initial, ceiling = self._restart_backoff
        delay = float(min(ceiling, initial * 2 ** min(failures - 1, 30)))
        reason = f"{type(exc).__name__}: {exc}"
        with self._progress:
            self._error = reason
            self.restarts += 1
            self._progress.notify_all()
        log.error(
            "view of %s failed (%s); restarting in %.1fs (failure %d in a row)",
            self.topic,
            reason,
            delay,
            failures,
        )
        return delay

    def _resumed_consumer(self) -> Consumer:
        """A new consumer at the offsets applied so far (every record before them is)."""
        consumer = self._new_consumer()
        with self._lock:
            positions = dict(self._positions)
        try:
            consumer.assign(
                [
                    TopicPartition(self.topic, p, offset if offset > 0 else OFFSET_BEGINNING)
                    for p, offset in sorted(positions.items())
                ]
            )
        except BaseException:
            self._close_quietly(consumer)
            raise
        return consumer

    @staticmethod
    def _close_quietly(consumer: Consumer | None) -> None:
        if consumer is None:
            return
        try:
            consumer.close()
        except Exception as exc:  # a broken consumer may fail to close too; it is dropped
            log.debug("closing a failed view consumer: %s", exc)

    def _read(self, consumer: Consumer) -> None:
        """Apply records until stopped; raises on any error (the caller restarts)."""
        while not self._stop.is_set():
            messages = consume_available(consumer, 500, self._poll_interval)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    if not error.retriable():
                        raise ViewError(error.str())
                    continue
                self._apply(message)
            self._advance(consumer)
            if self._error is not None:
                self._recovered()

    def _recovered(self) -> None:
        with self._progress:
            reason, self._error = self._error, None
            self._failures_in_row = 0  # the next failure starts the backoff afresh
            self._progress.notify_all()
        log.warning("view of %s is reading again (after: %s)", self.topic, reason)

    def _advance(self, consumer: Consumer) -> None:
        # The consumer's position also moves past records we never see (transaction markers,
        # compacted gaps), which the high watermark counts; message offsets alone could stall.
        # Our own assignment, not consumer.assignment(): that is a synchronous request to
        # librdkafka's main thread made holding the GIL, so it stalls every thread of the
        # process (an event loop too) until that thread answers: milliseconds on a busy host.
        positions = consumer.position(self._assigned)
        with self._progress:
            for tp in positions:
                if tp.offset >= 0 and tp.partition is not None:
                    self._positions[tp.partition] = max(self._positions[tp.partition], tp.offset)
            self._progress.notify_all()

    def _apply(self, message: Message) -> None:
        try:
            key, value = self._decode(message)
        except ValueError as exc:
            if self._on_error is not None:
                self._on_error(message, exc)
            key, value, skip = "", None, True
        else:
            skip = False
        with self._progress:
            old = None
            if not skip:
                old = self._data.pop(key, None) if value is None else self._data.get(key)
                if value is not None:
                    self._data[key] = value
        if not skip:
            for listener in self._listeners:
                listener(key, old, value)
        # Progress is published after the listeners ran, so a waiter (wait_for,
        # wait_until_caught_up) also sees every derived state (e.g. an index) up to date.
        with self._progress:
            self._positions[message.partition() or 0] = (message.offset() or 0) + 1
            self._progress.notify_all()
