"""Publish events to their subsystem topics with confirmed delivery."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from confluent_kafka import Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.produce import BatchAck, PublishError, Record
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.serde import Serde

__all__ = ["EventPublisher", "PublishError"]


class EventPublisher:
    """Encodes events as Avro and writes each to its subsystem topic, keyed by tenant id.

    ``publish`` returns only when Kafka acknowledged every record (acks=all, idempotent).
    """

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self._settings = settings
        self._serde = serde or serde_for(settings)
        self._producer = Producer(producer_config(settings))

    def publish(self, events: Iterable[Event], timeout: float = 30.0) -> list[Event]:
        """Write ``events`` and wait for Kafka's acknowledgement of all of them.

        Raises PublishError if any failed, PublishTimeout (one) if not all were acknowledged
        within ``timeout`` seconds; nothing is then reported as published.
        """
        batch = list(events)
        ack = BatchAck("events")
        ack.send_all(self._producer, self._records(batch))
        ack.wait(self._producer, timeout)
        return batch

    def _records(self, events: list[Event]) -> Iterator[Record]:
        # Encoded lazily, so each record is produced as soon as it is ready.
        topic_of = self._settings.topics.for_event_type
        encode = self._serde.events.encode
        for event in events:
            topic = topic_of(event.type)
            yield Record(topic, event.tenant_id.encode(), encode(event, topic))

    def close(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
