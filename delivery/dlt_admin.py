"""Reading, filtering and redriving the deliveries dead-letter topic (``cpevents dlt``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.deadletter import (
    FAILED_AT,
    DeadLetter,
    header_map,
    message_headers,
    parse_dead_letter,
    present_records,
    redrive_record,
)
from plumbing.kafka.produce import BatchAck
from plumbing.settings import Settings


@dataclass(frozen=True)
class DeadLetterRecord:
    """One parked task: where it sits in the DLT, what it is and why it is there."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
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
    """Every record of the deliveries DLT present now that ``selection`` matches, ordered by
    failure time. TimeoutError if the topic cannot be read within ``timeout`` seconds."""
    found: list[DeadLetterRecord] = []
    topic = settings.topics.deliveries_dlt
    for message in present_records(settings, topic, timeout, "dlt-reader"):
        record = DeadLetterRecord.from_message(message)
        if selection.matches(record):
            found.append(record)
    return sorted(found, key=lambda r: (r.failed_at_ms, r.partition, r.offset))


def redrive(settings: Settings, records: Iterable[DeadLetterRecord], timeout: float = 30.0) -> int:
    """Send ``records`` back to the first retry tier, due at once, with a fresh ladder.

    Returns how many were redriven. Raises PublishTimeout (a TimeoutError) if they are not
    all acknowledged within ``timeout`` seconds, PublishError (a RuntimeError) if any failed.
    """
    target = settings.topics.retry(settings.retry_tiers[0])
    producer = Producer(producer_config(settings))
    batch = BatchAck(f"records redriven to {target}")
    batch.send_all(
        producer,
        (redrive_record(r.key, r.value, r.headers, topic=target) for r in records),
    )
    return batch.wait(producer, timeout)
