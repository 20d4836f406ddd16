"""Reading, filtering and redriving the deliveries dead-letter topic (``cpevents dlt``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.kafka.deadletter import (
    FAILED_AT,
    DeadLetter,
    HeaderList,
    header_map,
    message_headers,
    parse_dead_letter,
    redrive_record,
)
from plumbing.settings import Settings


@dataclass(frozen=True)
class DeadLetterRecord:
    """One parked task: where it sits in the DLT, what it is and why it is there."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    info: DeadLetter
    failed_at_ms: int

    @property
    def ref(self) -> str:
        """``partition:offset``, how the CLI names a record."""
        return f"{self.partition}:{self.offset}"

    @property
    def webhook_id(self) -> str:
        return self.info.extra.get("webhook-id") or (self.key or b"").decode(errors="replace")

    @property
    def tenant_id(self) -> str:
        return self.info.extra.get("tenant-id", "")

    @property
    def delivery_id(self) -> str:
        return self.info.extra.get("delivery-id", "")

    @classmethod
    def from_message(cls, message: Message) -> DeadLetterRecord:
        headers = message_headers(message)
        try:
            failed_at = int(header_map(headers).get(FAILED_AT, "0"))
        except ValueError:
            failed_at = 0
        return cls(
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=headers,
            info=parse_dead_letter(headers),
            failed_at_ms=failed_at,
        )


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to pick; None means any. Times are epoch milliseconds of failure."""

    webhook_id: str | None = None
    tenant_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    refs: frozenset[str] | None = None

    def matches(self, record: DeadLetterRecord) -> bool:
        return (
            (self.webhook_id is None or record.webhook_id == self.webhook_id)
            and (self.tenant_id is None or record.tenant_id == self.tenant_id)
            and (self.since_ms is None or record.failed_at_ms >= self.since_ms)
            and (self.until_ms is None or record.failed_at_ms < self.until_ms)
            and (self.refs is None or record.ref in self.refs)
        )


def read_dead_letters(
    settings: Settings, selection: DeadLetterFilter, timeout: float = 30.0
) -> list[DeadLetterRecord]:
    """Every record of the deliveries DLT present now that ``selection`` matches, in order."""
    topic = settings.topics.deliveries_dlt
    consumer = Consumer(
        consumer_config(
            settings, f"dlt-reader-{uuid.uuid4().hex}", **{"enable.partition.eof": True}
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions)
        ends: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        found: list[DeadLetterRecord] = []
        remaining = dict(ends)
        while remaining:
            message = consumer.poll(timeout)
            if message is None:
                raise TimeoutError(f"{topic}: no record within {timeout}s (still {remaining})")
            partition = message.partition() or 0
            if message.error() is None:
                record = DeadLetterRecord.from_message(message)
                if selection.matches(record):
                    found.append(record)
            position = (message.offset() or 0) + 1 if message.error() is None else ends[partition]
            if partition in remaining and position >= remaining[partition]:
                del remaining[partition]
        return sorted(found, key=lambda r: (r.failed_at_ms, r.partition, r.offset))
    finally:
        consumer.close()


def redrive(settings: Settings, records: Iterable[DeadLetterRecord], timeout: float = 30.0) -> int:
    """Send ``records`` back to the first retry tier, due at once, with a fresh ladder."""
    target = settings.topics.retry(settings.retry_tiers[0])
    producer = Producer(producer_config(settings))
    errors: list[str] = []
    count = 0
    for record in records:
        out = redrive_record(record.key, record.value, record.headers, topic=target)
        producer.produce(
            out.topic,
            key=out.key,
            value=out.value,
            headers=list(out.headers),
            on_delivery=lambda err, _msg: errors.append(err.str()) if err else None,
        )
        producer.poll(0)
        count += 1
    if producer.flush(timeout):
        raise TimeoutError(f"{target}: redriven records not acknowledged within {timeout}s")
    if errors:
        raise RuntimeError(f"{target}: {len(errors)} redriven records failed: {errors[0]}")
    return count
