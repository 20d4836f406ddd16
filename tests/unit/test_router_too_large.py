"""BatchWriter and records Kafka refuses as too large: never retried forever, returned instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from plumbing.kafka.produce import Record
from streams.writer import BatchWriter


class FakeMessage:
    def __init__(self, record: Record) -> None:
        self._record = record

    def topic(self) -> str:
        return self._record.topic

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes | None:
        return self._record.value

    def headers(self) -> None:
        return None


class FakeProducer:
    """Refuses values over ``client_max`` in ``produce`` (librdkafka's message.max.bytes) and
    reports MSG_SIZE_TOO_LARGE for values over ``broker_max``, or for every record of a flush
    holding more than ``batch_max`` bytes (a batch the broker refused as a whole)."""

    def __init__(self, client_max: int, broker_max: int, batch_max: int) -> None:
        self.client_max, self.broker_max, self.batch_max = client_max, broker_max, batch_max
        self.queued: list[tuple[Record, Callable[[Any, Any], None]]] = []
        self.stored: list[bytes] = []
        self.flushes = 0

    def produce(
        self, topic: str, key: Any = None, value: Any = None, headers: Any = None, **kw: Any
    ) -> None:
        if len(value) > self.client_max:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message too large"))
        self.queued.append((Record(topic, key, value), kw["on_delivery"]))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        self.flushes += 1
        batch, self.queued = self.queued, []
        whole = sum(len(r.value or b"") for r, _ in batch) > self.batch_max
        for record, callback in batch:
            too_large = whole or len(record.value or b"") > self.broker_max
            error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
            if not too_large:
                self.stored.append(record.value or b"")
            callback(error if too_large else None, FakeMessage(record))
        return 0


def records(*sizes: int) -> list[Record]:
    return [
        Record("p.deliveries", f"k{i}".encode(), bytes([65 + i]) * n) for i, n in enumerate(sizes)
    ]


async def test_records_refused_by_the_client_or_the_broker_are_returned_not_retried() -> None:
    producer = FakeProducer(client_max=1000, broker_max=500, batch_max=10_000)
    writer = BatchWriter(producer, retry_backoff=0)  # type: ignore[arg-type]
    batch = records(10, 2000, 20, 700, 30)
    refused = await writer.write(batch)
    assert [r.record.value for r in refused] == [batch[1].value, batch[3].value]
    assert "too large" in refused[0].reason and "2002 bytes" in refused[0].reason
    assert "Broker: Message size too large" in refused[1].reason
    assert producer.stored == [batch[0].value, batch[2].value, batch[4].value]


async def test_a_batch_refused_as_a_whole_is_retried_record_by_record() -> None:
    # Each record fits; together they exceed the broker's limit: none of them is refused.
    producer = FakeProducer(client_max=1000, broker_max=500, batch_max=600)
    writer = BatchWriter(producer, retry_backoff=0)  # type: ignore[arg-type]
    batch = records(400, 400, 400)
    assert await writer.write(batch) == []
    assert producer.stored == [r.value for r in batch]
    assert writer.settle(1)
