"""Writing a batch of output records and returning only once Kafka acknowledged all of them.

The router produces through confluent-kafka rather than Faust's ``send``: one Faust send per
record (a future and a callback each) tops out far below the router's target of 12k events/s
per worker, while librdkafka batches, compresses and retries on its own threads.

A record Kafka refuses as too large (``MSG_SIZE_TOO_LARGE``, raised by ``produce`` against the
client's ``message.max.bytes`` or reported by the broker against the topic's
``max.message.bytes``; ``RECORD_LIST_TOO_LARGE``) is never retried as it is: that would stall
the partition forever. It is produced once more on its own (in a batch with others the batch
may have been too large, not the record), and if Kafka refuses it again it is returned to the
caller as :class:`Refused`, which dead-letters its source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from plumbing.kafka.produce import Record, produce, record_of

log = logging.getLogger(__name__)

#: Errors that mean "this record is too large for the topic or the client": permanent.
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


@dataclass(frozen=True, slots=True)
class Refused:
    """A record Kafka refused as too large, even alone, and why."""

    record: Record
    reason: str


def _too_large_reason(record: Record, error: KafkaError) -> str:
    size = len(record.value or b"") + len(record.key or b"")
    return f"refused by Kafka as too large ({size} bytes of key and value): {error.str()}"


class WriterClosed(RuntimeError):
    """The writer was closed while records were still unacknowledged."""


class BatchWriter:
    """Produces batches with a durable producer (acks=all, idempotent).

    ``write`` retries records whose delivery failed until every one is acknowledged, so a broker
    outage stalls the router instead of losing tasks; the caller commits its input afterwards.
    Unlike a :class:`~plumbing.kafka.produce.BatchAck`, a failure is not an error here: the
    failed records are collected (as they were produced) to be produced again.
    """

    def __init__(self, producer: Producer, retry_backoff: float = 0.5) -> None:
        self._producer = producer
        self._retry_backoff = retry_backoff
        self._failed: list[Record] = []
        self._too_large: list[Record] = []
        self._closing = False
        self._all_produced = True

    async def write(self, records: Sequence[Record]) -> list[Refused]:
        """Produce ``records``; return when Kafka acknowledged all of them but those it
        refused as too large (returned, each with the reason; see the module doc)."""
        pending: Sequence[Record] = records
        refused: list[Refused] = []
        loop = asyncio.get_running_loop()
        while pending:
            self._failed = []
            self._too_large = []
            self._all_produced = False
            self._produce_all(pending, refused)
            self._all_produced = True
            # flush() waits on librdkafka's threads with the GIL released; in an executor it
            # keeps the event loop (heartbeats, fetches, the web server) running meanwhile.
            await loop.run_in_executor(None, self._flush_until_empty)
            if self._too_large:
                refused.extend(await loop.run_in_executor(None, self._alone, self._too_large))
                self._too_large = []  # settled (only after: settle() must see them pending)
            pending = self._failed
            if pending:
                log.warning("%d records not acknowledged, producing them again", len(pending))
                await asyncio.sleep(self._retry_backoff)
        return refused

    def _produce_all(self, pending: Sequence[Record], refused: list[Refused]) -> None:
        producer = self._producer
        on_delivery = self._on_delivery  # one bound method per batch, not one per record
        remaining = pending
        while remaining:
            index = 0
            try:
                for index, record in enumerate(remaining):  # noqa: B007 - the except reads it
                    produce(producer, record, on_delivery)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() not in TOO_LARGE:
                    raise WriterClosed(f"producer failed: {exc}") from exc
                # Refused before it was queued (over the client's message.max.bytes).
                record = remaining[index]
                refused.append(Refused(record, _too_large_reason(record, error)))
                remaining = remaining[index + 1 :]

    def _alone(self, suspects: Sequence[Record]) -> list[Refused]:
        """Produce each record the broker refused as too large on its own (flushed before the
        next); those refused again are returned, other failures go back to ``_failed``."""
        refused: list[Refused] = []
        for record in suspects:
            error = self._produce_alone(record)
            if error is not None and error.code() in TOO_LARGE:
                reason = _too_large_reason(record, error)
                log.error("%s: a record was %s", record.topic, reason)
                refused.append(Refused(record, reason))
            elif error is not None:
                self._failed.append(record)
        return refused

    def _produce_alone(self, record: Record) -> KafkaError | None:
        outcome: list[KafkaError | None] = []
        try:
            produce(self._producer, record, lambda err, _msg: outcome.append(err))
        except KafkaException as exc:
            if exc.args[0].code() not in TOO_LARGE:
                raise WriterClosed(f"producer failed: {exc}") from exc
            return exc.args[0]  # type: ignore[no-any-return]
        self._flush_until_empty()
        return outcome[0] if outcome else None

    def settle(self, timeout: float) -> bool:
        """After an interrupted ``write``: wait up to ``timeout`` s; True iff all were acked."""
        if not self._all_produced:
            return False
        flushed = int(self._producer.flush(timeout)) == 0
        return flushed and not self._failed and not self._too_large

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued; a ``write`` still waiting then fails with WriterClosed."""
        self._closing = True
        self._producer.flush(timeout)

    def _flush_until_empty(self) -> None:
        while self._producer.flush(1.0) > 0:
            if self._closing:
                raise WriterClosed("writer closed with records in flight")

    def _on_delivery(self, err: KafkaError | None, message: Message) -> None:
        if err is None:
            return
        if err.code() in TOO_LARGE:  # permanent: retried alone once, then refused (see write)
            self._too_large.append(record_of(message))
            return
        log.warning("delivery to %s failed (%s), will retry", message.topic(), err.str())
        self._failed.append(record_of(message))
