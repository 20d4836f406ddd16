"""Routing one event record to delivery tasks. No Kafka I/O here, so it is unit tested directly."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.delivery import DeliveryTask
from schemas.event import Event
from schemas.serde import DecodeError, Serde
from streams.matching import WebhookIndex


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A delivery task ready to produce: keyed by webhook id, so a webhook's tasks stay ordered."""

    task_id: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Routed:
    """The outcome for one event record: its tasks, or why it must be dead-lettered."""

    tasks: tuple[TaskRecord, ...] = ()
    dead_letter_reason: str | None = None
    event: Event | None = None


class RegistryUnavailable(RuntimeError):
    """The schema registry could not be asked: a transient outage, not a bad record."""


class Router:
    """Decodes event records and turns them into delivery tasks for the matching webhooks."""

    def __init__(self, serde: Serde, index: WebhookIndex, deliveries_topic: str) -> None:
        self._serde = serde
        self._index = index
        self._deliveries_topic = deliveries_topic

    def route(self, topic: str, value: bytes | None) -> Routed:
        """The tasks for the record ``value`` read from ``topic`` (an events topic).

        Raises RegistryUnavailable when the writer schema cannot be fetched for a reason other
        than "no such schema": dead-lettering on a registry outage would park good events.
        """
        self._check_writer_schema(value)
        try:
            event = self._serde.events.decode(value, topic)
        except DecodeError as exc:
            return Routed(dead_letter_reason=exc.reason)
        tasks = tuple(
            self._task(DeliveryTask.for_event(event, webhook.id, webhook.url))
            for webhook in self._index.match(event.tenant_id, event.type)
        )
        return Routed(tasks=tasks, event=event)

    def _check_writer_schema(self, value: bytes | None) -> None:
        if not value or len(value) < 5 or value[0] != 0:
            return  # not wire format: the codec says so with its own reason
        schema_id = int.from_bytes(value[1:5], "big")
        try:
            self._serde.client.get_schema(schema_id)  # cached after the first lookup
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return  # unknown schema id: the codec dead-letters it with the reason
            raise RegistryUnavailable(f"schema registry error: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {exc}") from exc

    def _task(self, task: DeliveryTask) -> TaskRecord:
        value = self._serde.tasks.encode(task, self._deliveries_topic)
        return TaskRecord(task.id, task.webhook_id.encode(), value)
