"""Routing one event record to delivery tasks. No Kafka I/O here, so it is unit tested directly.

Every record is decoded (and validated) by the Event codec; one that fails is dead-lettered with
the codec's reason. For records written with exactly our Event schema (every producer of this
project, and foreign ones using the registered schema) each task's bytes are assembled from the
event's own bytes (:mod:`streams.task_bytes`); others are encoded from the decoded event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.delivery_records import DeliveryTask
from schemas.ids import delivery_id
from schemas.serde import DecodeError, Serde
from streams.matching import WebhookIndex
from streams.task_bytes import TaskBytes, avro_long

R = TypeVar("R")


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


class RegistryUnavailable(RuntimeError):
    """The schema registry could not be asked: a transient outage, not a bad record."""


class Router:
    """Decodes event records and turns them into delivery tasks for the matching webhooks."""

    def __init__(self, serde: Serde, index: WebhookIndex, deliveries_topic: str) -> None:
        self._serde = serde
        self._index = index
        self._deliveries_topic = deliveries_topic
        self._task_bytes: TaskBytes | None = None

    def route(self, topic: str, value: bytes | None, created_at_us: int | None = None) -> Routed:
        """The tasks for the record ``value`` read from ``topic`` (an events topic).

        ``created_at_us`` stamps the tasks (default: now); a batch passes one value for all.
        Raises RegistryUnavailable when a schema cannot be fetched or registered for a reason
        other than "no such schema": dead-lettering on a registry outage would park good events.
        """
        try:
            event = self._registry_call(self._serde.events.decode, value, topic)
        except DecodeError as exc:
            return Routed(dead_letter_reason=exc.reason)
        # Type patterns, then payload filters (only webhooks that have one look at the payload).
        webhooks = self._index.match_event(event)
        if not webhooks:
            return Routed()
        assert value is not None  # decoded, so it had bytes
        tasks = []
        if self._serde.events.written_with_our_schema(value):
            # The event's own Avro body goes into each task unchanged (see streams.task_bytes).
            builder = self._builder()
            stamp = avro_long(time.time_ns() // 1000 if created_at_us is None else created_at_us)
            for webhook in webhooks:
                task_id = delivery_id(event.id, webhook.id)
                value_bytes = builder.build(
                    task_id, webhook.id, webhook.url, event.tenant_id, value, stamp
                )
                tasks.append(TaskRecord(task_id, webhook.id.encode(), value_bytes))
            return Routed(tasks=tuple(tasks))
        for webhook in webhooks:
            task = DeliveryTask.for_event(event, webhook.id, webhook.url)
            encoded = self._registry_call(self._serde.tasks.encode, task, self._deliveries_topic)
            tasks.append(TaskRecord(task.id, task.webhook_id.encode(), encoded))
        return Routed(tasks=tuple(tasks))

    def _builder(self) -> TaskBytes:
        if self._task_bytes is None:
            schema_id = self._registry_call(self._serde.tasks.schema_id, self._deliveries_topic)
            self._task_bytes = TaskBytes(schema_id)
        return self._task_bytes

    @staticmethod
    def _registry_call(call: Callable[..., R], *args: Any) -> R:
        # Encoding a decoded event only fails when its schema cannot be registered or looked up.
        try:
            return call(*args)
        except DecodeError:
            raise  # the record itself is bad: the caller dead-letters it
        except SchemaRegistryError as exc:
            raise RegistryUnavailable(f"schema registry error: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {exc}") from exc
