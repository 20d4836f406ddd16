"""Writing a batch of output records and returning only once Kafka acknowledged all of them.

The router produces through confluent-kafka rather than Faust's ``send``: one Faust send per
record tops out far below the router's target (see the architecture page), while librdkafka
batches, compresses and retries on its own threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, str | bytes | None]] | None = None


class WriterClosed(RuntimeError):
    """The writer was closed while records were still unacknowledged."""


class BatchWriter:
    """Produces batches with a durable producer (acks=all, idempotent).

    ``write`` retries records whose delivery failed until every one is acknowledged, so a broker
    outage stalls the router instead of losing tasks; the caller commits its input afterwards.
    """

    def __init__(self, producer: Producer, retry_backoff: float = 0.5) -> None:
        self._producer = producer
        self._retry_backoff = retry_backoff
        self._failed: list[OutRecord] = []
        self._closing = False
        self._all_produced = True

    async def write(self, records: Sequence[OutRecord]) -> None:
        """Produce ``records``; return when Kafka acknowledged all of them."""
        pending: Sequence[OutRecord] = records
        loop = asyncio.get_running_loop()
        while pending:
            self._failed = []
            self._all_produced = False
            for record in pending:
                self._produce(record)
            self._all_produced = True
            # flush() waits on librdkafka's threads with the GIL released; in an executor it
            # keeps the event loop (heartbeats, fetches, the web server) running meanwhile.
            await loop.run_in_executor(None, self._flush_until_empty)
            pending = self._failed
            if pending:
                log.warning("%d records not acknowledged, producing them again", len(pending))
                await asyncio.sleep(self._retry_backoff)

    def settle(self, timeout: float) -> bool:
        """After an interrupted ``write``: wait up to ``timeout`` s; True iff all were acked."""
        if not self._all_produced:
            return False
        return int(self._producer.flush(timeout)) == 0 and not self._failed

    def close(self, timeout: float = 30.0) -> None:
        self._closing = True
        self._producer.flush(timeout)

    def _produce(self, record: OutRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers) if record.headers else None,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                # The local queue is full: wait for acknowledgements to free room.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise WriterClosed(f"producer failed: {exc}") from exc

    def _flush_until_empty(self) -> None:
        while self._producer.flush(1.0) > 0:
            if self._closing:
                raise WriterClosed("writer closed with records in flight")

    def _on_delivery(self, err: KafkaError | None, message: Message) -> None:
        if err is None:
            return
        log.warning(
            "delivery to %s failed (%s), will retry", message.topic(), err.str() if err else ""
        )
        headers = message.headers()
        pairs: Headers | None = None
        if headers:
            pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        self._failed.append(OutRecord(message.topic() or "", message.key(), message.value(), pairs))
