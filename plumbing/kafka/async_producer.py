"""An asyncio face on confluent-kafka's Producer: awaitable, confirmed sends that never block
the event loop.

librdkafka reports each delivery through a callback served by ``poll``; a background thread
polls, and an :class:`~plumbing.kafka.produce.AsyncBatchAck` completes the batch's asyncio
future thread-safely. A batch shares one future, so the per-record cost stays close to a bare
``produce`` call; a full local queue yields to the loop until the poll thread has made room.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from plumbing.kafka.produce import AsyncBatchAck, Delivered, Headers, Record


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
        (delivered,) = await self.send_batch([Record(topic, key, value, headers or ())])
        return delivered

    async def send_batch(
        self, records: Sequence[Record], *, positions: bool = True
    ) -> list[Delivered]:
        """Write ``records`` (in order per partition); return once every one is acknowledged,
        with where each was stored (nothing with ``positions=False``: cheaper per record).

        Raises PublishError if any record failed; the others may have been stored (at least once).
        """
        if not records:
            return []
        batch = AsyncBatchAck(asyncio.get_running_loop(), positions=positions)
        return await batch.send_all_async(self._producer, records)

    async def flush(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - librdkafka flush
        """Wait until every queued record is acknowledged; returns how many are still queued."""
        remaining: int = await asyncio.to_thread(self._producer.flush, timeout)
        return remaining

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - as flush
        """Flush, then stop the poll thread."""
        await self.flush(timeout)
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5.0)
