"""An asyncio face on confluent-kafka's Producer: awaitable, confirmed sends that never block
the event loop.

librdkafka reports each delivery through a callback served by ``poll``; a background thread
polls, and the callbacks complete asyncio futures with ``call_soon_threadsafe``. A batch shares
one future, so the per-record cost stays close to a bare ``produce`` call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

Headers = Sequence[tuple[str, bytes]]


class PublishError(RuntimeError):
    """Kafka refused or failed to store a record; the caller must treat it as not written."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record to write."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where Kafka stored a record."""

    topic: str
    partition: int
    offset: int


def _kafka_headers(headers: Headers | None) -> list[tuple[str, str | bytes | None]] | None:
    return [(name, value) for name, value in headers] if headers else None


class _Batch:
    """Counts delivery reports of one batch and completes its future when all have arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[Delivered]] = loop.create_future()
        self.pending = size
        self.delivered: list[Delivered] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err.str()}")
            else:
                self.delivered.append(
                    Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                )
            self.pending -= 1
            done = self.pending == 0
        if done:
            self.loop.call_soon_threadsafe(self._complete)

    def fail_unsent(self, count: int, reason: str) -> None:
        """Account for records that were never handed to librdkafka."""
        with self._lock:
            self.errors.append(reason)
            self.pending -= count
            done = self.pending == 0
        if done:
            self._complete()

    def _complete(self) -> None:
        if self.future.done():
            return
        if self.errors:
            self.future.set_exception(
                PublishError(f"{len(self.errors)} records failed: {self.errors[0]}")
            )
        else:
            self.future.set_result(self.delivered)


class AsyncProducer:
    """Confirmed, non-blocking writes: ``await send(...)`` returns once Kafka acknowledged."""

    def __init__(self, config: dict[str, Any], poll_timeout: float = 0.1) -> None:
        self._producer = Producer(config)
        self._poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="async-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(self._poll_timeout)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> Delivered:
        """Write one record; return where it was stored."""
        (delivered,) = await self.send_batch([Record(topic, key, value, headers)])
        return delivered

    async def send_batch(self, records: Sequence[Record]) -> list[Delivered]:
        """Write ``records`` (in order per partition); return once every one is acknowledged.

        Raises PublishError if any record failed; the others may have been stored (at least once).
        """
        if not records:
            return []
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for index, record in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        record.topic,
                        key=record.key,
                        value=record.value,
                        headers=_kafka_headers(record.headers),
                        on_delivery=batch.on_delivery,
                    )
                    break
                except BufferError:
                    # The local queue is full: let the poll thread drain acknowledgements.
                    await asyncio.sleep(0.005)
                except Exception as exc:  # KafkaException, TypeError: never produced
                    batch.fail_unsent(len(records) - index, f"{record.topic}: {exc}")
                    return await batch.future
        return await batch.future

    async def flush(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - librdkafka flush
        """Wait until every queued record is acknowledged; returns how many are still queued."""
        remaining: int = await asyncio.to_thread(self._producer.flush, timeout)
        return remaining

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - as flush
        """Flush, then stop the poll thread."""
        await self.flush(timeout)
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5.0)
