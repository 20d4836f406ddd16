"""The one produce path: the record type, its headers, and what to do when librdkafka's local
queue is full.

Every writer of this project (the Bus, the gateway, the router, the delivery worker, redrive,
redeliver, the registry's store) hands records to a confluent-kafka ``Producer`` through
:func:`produce` or :func:`produce_async`, so back-pressure is handled in one place: a full queue
(``BufferError``) means "serve acknowledgements until there is room", never an error and never
a dropped record.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Message, Producer

# A header value as confluent-kafka accepts it; consumed headers always come back as bytes.
HeaderValue = str | bytes | None
Headers = Sequence[tuple[str, HeaderValue]]
DeliveryCallback = Callable[[KafkaError | None, Message], Any]

# How long one wait for room lasts (seconds): short, so the record goes out as soon as room is
# made, long enough not to spin.
_ROOM_POLL = 0.01


class Record(NamedTuple):
    """One record to write: topic, key, value and headers (a NamedTuple: cheap per record)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


class PublishError(RuntimeError):
    """Kafka refused or failed to store a record; the caller must treat it as not written."""


class PublishTimeout(PublishError, TimeoutError):
    """Records were still unacknowledged when the wait ended (they may yet be stored)."""


class Delivered(NamedTuple):
    """Where Kafka stored a record."""

    topic: str
    partition: int
    offset: int


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """A consumed message's headers as (name, bytes) pairs, in order (none: an empty list)."""
    headers = message.headers()
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [
        (name, value.encode() if isinstance(value, str) else value or b"") for name, value in pairs
    ]


def record_of(message: Message) -> Record:
    """A consumed message as a record to write again (same topic, key, value and headers)."""
    return Record(message.topic() or "", message.key(), message.value(), message_headers(message))


def _send(producer: Producer, record: Record, on_delivery: DeliveryCallback | None) -> None:
    headers = record.headers
    producer.produce(
        record.topic,
        key=record.key,
        value=record.value,
        headers=list(headers) if headers else None,
        on_delivery=on_delivery,
    )


def produce(producer: Producer, record: Record, on_delivery: DeliveryCallback | None) -> None:
    """Hand ``record`` to ``producer``; on a full local queue, serve acknowledgements (poll, so
    ``on_delivery`` callbacks run on this thread) until there is room.

    For callers that own the producer's polling on this thread. ``KafkaException`` (e.g. an
    unknown topic with auto-creation off, a record over the client's size limit) propagates:
    the record was not written.
    """
    topic, key, value, headers = record
    # Inlined rather than through ``_send``: this is the delivery worker's per-output call.
    while True:
        try:
            producer.produce(
                topic,
                key=key,
                value=value,
                headers=list(headers) if headers else None,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(_ROOM_POLL)


async def produce_async(
    producer: Producer, record: Record, on_delivery: DeliveryCallback | None
) -> None:
    """As :func:`produce`, for a producer polled by another thread: on a full queue, yield to
    the event loop until that thread has freed room (never blocks the loop)."""
    while True:
        try:
            _send(producer, record, on_delivery)
            return
        except BufferError:
            await asyncio.sleep(_ROOM_POLL)


def produce_to_partition(
    producer: Producer, record: Record, partition: int, on_delivery: DeliveryCallback | None
) -> None:
    """As :func:`produce`, to a fixed ``partition`` instead of the key's.

    For single-partition logs whose writer tracks offsets of that one partition (the
    registry's): the key hash must not be able to send a record elsewhere, even on a topic
    created with more partitions. Kept apart from :func:`produce` so the common path passes no
    extra argument per record.
    """
    while True:
        try:
            producer.produce(
                record.topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers) if record.headers else None,
                partition=partition,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(_ROOM_POLL)


# -- batch acknowledgement --------------------------------------------------------------------


class BatchAck:
    """Counts the delivery reports of one batch; raises :class:`PublishError` if any failed.

    The synchronous form, for a producer whose callbacks run on the caller's thread (``poll``
    and ``flush`` here): ``send`` each record (or ``send_all``), then ``wait``. No lock, and no
    object per record: a batch costs a few counters whatever its size, so a long stream (a
    replay's redeliveries) can share one.
    """

    __slots__ = ("acked", "failed", "first_failure", "produced", "what")

    def __init__(self, what: str = "records") -> None:
        #: What the records are, for error messages ("3 events failed: ...").
        self.what = what
        self.produced = 0
        self.acked = 0
        self.failed = 0
        self.first_failure = ""

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery callback to pass to :func:`produce` for each record of the batch."""
        if err is None:
            self.acked += 1
        else:
            self._fail(1, f"{msg.topic()}: {err.str()}")

    def _fail(self, count: int, reason: str) -> None:
        if not self.failed:
            self.first_failure = reason
        self.failed += count

    @property
    def reported(self) -> int:
        """Records whose fate is known (acknowledged or failed)."""
        return self.acked + self.failed

    def send(self, producer: Producer, record: Record) -> None:
        """Produce ``record`` as part of the batch (waiting for room if the queue is full)."""
        produce(producer, record, self.on_delivery)
        self.produced += 1
        # Serve reports as we go: the queue rarely fills and the counters stay current.
        producer.poll(0)

    def send_all(self, producer: Producer, records: Iterable[Record]) -> None:
        """``send`` every record of ``records``, in order."""
        on_delivery = self.on_delivery  # one bound method for the batch, not one per record
        poll = producer.poll
        produced = 0
        try:
            for record in records:
                produce(producer, record, on_delivery)
                produced += 1
                poll(0)
        finally:
            self.produced += produced

    def wait(self, producer: Producer, timeout: float) -> int:
        """Flush ``producer``; return how many records were acknowledged.

        Raises :class:`PublishTimeout` if records are still queued after ``timeout`` seconds,
        :class:`PublishError` (naming the first failure and the count) if any failed.
        """
        remaining = int(producer.flush(timeout))
        if remaining:
            raise PublishTimeout(f"{remaining} {self.what} not acknowledged within {timeout}s")
        self.raise_if_failed()
        return self.acked

    def raise_if_failed(self) -> None:
        """:class:`PublishError` naming the first failure and the count, if any failed."""
        if self.failed:
            raise PublishError(f"{self.failed} {self.what} failed: {self.first_failure}")


class AsyncBatchAck(BatchAck):
    """The asyncio form: ``future`` completes, on its loop, once every record is reported.

    Delivery reports arrive on whatever thread serves the producer (a poll thread, a flush in
    an executor: possibly two at once), so counting takes a lock and completion is handed to
    the loop with ``call_soon_threadsafe``. The number of records is known only once all were
    produced: ``seal`` gives it, and whichever of ``seal`` and the last report comes second
    completes the future. The result lists where each acknowledged record was stored.
    """

    __slots__ = ("_expected", "_lock", "_loop", "_positions", "delivered", "future")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, what: str = "records", *, positions: bool = True
    ) -> None:
        """``positions=False``: count acknowledgements only, the result stays empty (a caller
        that never reads where records went saves a tuple per record, on the poll thread)."""
        super().__init__(what)
        self._loop = loop
        self._lock = threading.Lock()
        self._positions = positions
        self._expected = -1  # unknown until sealed
        self.delivered: list[Delivered] = []
        self.future: asyncio.Future[list[Delivered]] = loop.create_future()

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery callback; any thread."""
        with self._lock:
            if err is None:
                self.acked += 1
                if self._positions:
                    self.delivered.append(
                        Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                    )
            else:
                self._fail(1, f"{msg.topic()}: {err.str()}")
            done = self.reported == self._expected
        if done:
            self._loop.call_soon_threadsafe(self._complete)

    def seal(
        self, produced: int, refused: int = 0, reason: str = ""
    ) -> asyncio.Future[list[Delivered]]:
        """Every produce call was made (on the loop's thread): ``produced`` records were handed
        to the producer, ``refused`` more never were (counted as failed, ``reason`` why).
        Returns ``future``."""
        with self._lock:
            self.produced = produced
            if refused:
                self._fail(refused, reason)
            self._expected = produced + refused
            done = self.reported == self._expected
        if done:
            self._complete()
        return self.future

    def _complete(self) -> None:
        # Both seal and the last report may see the batch complete: the first one wins.
        if self.future.done():
            return
        if self.failed:
            self.future.set_exception(
                PublishError(f"{self.failed} {self.what} failed: {self.first_failure}")
            )
        else:
            self.future.set_result(self.delivered)

    async def send_all_async(
        self, producer: Producer, records: Sequence[Record]
    ) -> list[Delivered]:
        """Produce ``records`` (in order) to a producer polled by another thread, then wait
        until every one is reported. Raises PublishError if any failed or could not be
        produced; the others may have been stored (at least once)."""
        on_delivery = self.on_delivery
        produced = 0
        try:
            for record in records:
                try:
                    _send(producer, record, on_delivery)
                except BufferError:
                    # Only a full queue pays for a coroutine: the common case stays one call.
                    await produce_async(producer, record, on_delivery)
                produced += 1
        except Exception as exc:  # KafkaException, TypeError: this one and the rest never sent
            reason = f"{records[produced].topic}: {exc}"
            return await self.seal(produced, len(records) - produced, reason)
        return await self.seal(produced)
