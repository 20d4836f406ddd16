"""Routing one event record to delivery tasks. No Kafka I/O here, so it is unit tested directly.

Two paths give the same tasks. The fast one, for records written with exactly our Event schema
(every producer of this project, and foreign ones using the registered schema), scans the record
once and builds each task's bytes from the event's own bytes (:mod:`streams.task_bytes`). The
full one decodes the event (resolving other writer schemas), and also names the reason for a
record to be dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.avro import schema_dict
from schemas.delivery import DeliveryTask
from schemas.ids import delivery_id
from schemas.serde import DecodeError, Serde
from streams.matching import WebhookIndex
from streams.task_bytes import EventHead, TaskBytes, avro_long, scan_event

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


def _canonical(schema: object) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


class Router:
    """Decodes event records and turns them into delivery tasks for the matching webhooks."""

    def __init__(self, serde: Serde, index: WebhookIndex, deliveries_topic: str) -> None:
        self._serde = serde
        self._index = index
        self._deliveries_topic = deliveries_topic
        self._event_schema = _canonical(schema_dict("Event"))
        self._exact: dict[int, bool] = {}  # writer schema id -> is exactly our Event schema
        self._task_bytes: TaskBytes | None = None

    def route(self, topic: str, value: bytes | None, created_at_us: int | None = None) -> Routed:
        """The tasks for the record ``value`` read from ``topic`` (an events topic).

        ``created_at_us`` stamps the tasks (default: now); a batch passes one value for all.
        Raises RegistryUnavailable when a schema cannot be fetched or registered for a reason
        other than "no such schema": dead-lettering on a registry outage would park good events.
        """
        if value is not None and self._is_exact(value):
            head = scan_event(value)
            if head is not None:
                return self._route_scanned(head, value, created_at_us)
        return self._route_decoded(topic, value)

    def _route_scanned(self, head: EventHead, value: bytes, created_at_us: int | None) -> Routed:
        webhooks = self._index.match(head.tenant_id, head.type)
        if not webhooks:
            return Routed()
        builder = self._builder()
        stamp = avro_long(time.time_ns() // 1000 if created_at_us is None else created_at_us)
        tasks = []
        for webhook in webhooks:
            task_id = delivery_id(head.id, webhook.id)
            task = builder.build(task_id, webhook.id, webhook.url, head, value, stamp)
            tasks.append(TaskRecord(task_id, webhook.id.encode(), task))
        return Routed(tasks=tuple(tasks))

    def _route_decoded(self, topic: str, value: bytes | None) -> Routed:
        try:
            event = self._serde.events.decode(value, topic)
        except DecodeError as exc:
            return Routed(dead_letter_reason=exc.reason)
        tasks = []
        for webhook in self._index.match(event.tenant_id, event.type):
            task = DeliveryTask.for_event(event, webhook.id, webhook.url)
            encoded = self._registry_call(self._serde.tasks.encode, task, self._deliveries_topic)
            tasks.append(TaskRecord(task.id, task.webhook_id.encode(), encoded))
        return Routed(tasks=tuple(tasks))

    def _is_exact(self, value: bytes) -> bool:
        """Whether ``value`` was written with exactly our Event schema (registry looked up once
        per schema id). Unknown ids are left to the decoder, which names them."""
        if not value or len(value) < 5 or value[0] != 0:
            return False  # not wire format: the codec says so with its own reason
        schema_id = int.from_bytes(value[1:5], "big")
        exact = self._exact.get(schema_id)
        if exact is None:
            try:
                found = self._serde.client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return False  # unknown schema id: the codec dead-letters it with the reason
                raise RegistryUnavailable(f"schema registry error: {exc}") from exc
            except Exception as exc:
                raise RegistryUnavailable(f"schema registry unreachable: {exc}") from exc
            try:
                exact = _canonical(json.loads(found.schema_str or "")) == self._event_schema
            except ValueError:
                exact = False
            exact = exact and found.schema_type in (None, "AVRO")
            self._exact[schema_id] = exact
        return exact

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
        except SchemaRegistryError as exc:
            raise RegistryUnavailable(f"schema registry error: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {exc}") from exc
