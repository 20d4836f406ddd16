"""Publish events to their subsystem topics with confirmed delivery."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.settings import Settings
from schemas.event import Event
from schemas.serde import Serde


class PublishError(RuntimeError):
    """Kafka refused or failed to store an event; nothing is reported as published."""


class EventPublisher:
    """Encodes events as Avro and writes each to its subsystem topic, keyed by tenant id.

    ``publish`` returns only when Kafka acknowledged every record (acks=all, idempotent).
    """

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self._settings = settings
        self._serde = serde or Serde(settings.schema_registry_url)
        self._producer = Producer(producer_config(settings))

    def publish(self, events: Iterable[Event], timeout: float = 30.0) -> list[Event]:
        """Write ``events`` and wait for Kafka's acknowledgement of all of them."""
        batch = list(events)
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"{msg.topic()}: {err.str()}")

        for event in batch:
            topic = self._settings.topics.for_event_type(event.type)
            self._producer.produce(
                topic,
                key=event.tenant_id.encode(),
                value=self._serde.events.encode(event, topic),
                on_delivery=on_delivery,
            )
            # Serve delivery callbacks as we go so the local queue never fills up.
            self._producer.poll(0)
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PublishError(f"{remaining} events not acknowledged within {timeout}s")
        if errors:
            raise PublishError(f"{len(errors)} events failed: {errors[0]}")
        return batch

    def close(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
