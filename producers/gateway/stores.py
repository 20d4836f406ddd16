"""Kafka I/O of the gateway: the webhook and delivery views and their writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message

from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.view import CompactedTopicView, Listener
from plumbing.settings import Settings
from producers.gateway.delivery_index import DeliveryFilter, DeliveryIndex, Page, SortKey
from schemas.delivery_records import WebhookDelivery
from schemas.serde import AvroCodec, Serde
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

T = TypeVar("T", Webhook, WebhookDelivery)

_LEADERSHIP_ERRORS = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


class _View(Generic[T]):
    """A started CompactedTopicView of Avro records keyed by id."""

    def __init__(self, settings: Settings, topic: str, codec: AvroCodec[T]) -> None:
        self.topic = topic
        self._codec: AvroCodec[T] = codec
        self._settings = settings
        self._listeners: list[Listener[T]] = []
        self.view: CompactedTopicView[T] = self._new_view()

    def _new_view(self) -> CompactedTopicView[T]:
        view = CompactedTopicView(self._settings, self.topic, self._decode, on_error=self._skip)
        for listener in self._listeners:  # a view made again on a start retry keeps them
            view.add_listener(listener)
        return view

    def add_listener(self, listener: Listener[T]) -> None:
        """Call ``listener(key, old, new)`` for every change, from the first record on."""
        self._listeners.append(listener)
        self.view.add_listener(listener)

    def health(self) -> tuple[str, str | None]:
        """(topic, why the view is unhealthy or None)."""
        return self.topic, None if self.view.healthy else self.view.error

    def _decode(self, message: Message) -> tuple[str, T | None]:
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        if value is None:
            return key, None
        return key, self._codec.decode(value, self.topic)

    def _skip(self, message: Message, error: Exception) -> None:
        log.warning(
            "skipping undecodable record %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error,
        )

    async def start(self, attempts: int = 20) -> None:
        # Right after topic creation a partition may briefly have no leader: retry those.
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.to_thread(self.view.start)
                break
            except KafkaException as exc:
                error = exc.args[0]
                if attempt == attempts or not (
                    error.retriable() or error.code() in _LEADERSHIP_ERRORS
                ):
                    raise
                self.view = self._new_view()
                await asyncio.sleep(0.25)
        await asyncio.to_thread(self.view.wait_until_caught_up)

    def stop(self) -> None:
        self.view.stop()


class WebhookStore:
    """Webhook configs on the compacted webhooks topic, with read-your-writes."""

    def __init__(self, settings: Settings, serde: Serde, producer: AsyncProducer) -> None:
        self._serde = serde
        self._producer = producer
        self._topic = settings.topics.webhooks
        self._view = _View(settings, self._topic, serde.webhooks)

    async def start(self) -> None:
        await self._view.start()

    def stop(self) -> None:
        self._view.stop()

    def get(self, webhook_id: str) -> Webhook | None:
        return self._view.view.get(webhook_id)

    def all(self) -> list[Webhook]:
        return list(self._view.view.snapshot().values())

    def count_for(self, tenant_id: str) -> int:
        """How many webhooks ``tenant_id`` has."""
        return sum(1 for webhook in self.all() if webhook.tenant_id == tenant_id)

    def health(self) -> tuple[str, str | None]:
        """(topic, why the view is unhealthy or None)."""
        return self._view.health()

    async def put(self, webhook: Webhook) -> None:
        """Write ``webhook`` and return once this gateway's view shows it."""
        value = await asyncio.to_thread(self._serde.webhooks.encode, webhook, self._topic)
        await self._write(webhook.id, value)

    async def delete(self, webhook_id: str) -> None:
        """Tombstone ``webhook_id`` and return once the view dropped it."""
        await self._write(webhook_id, None)

    async def _write(self, key: str, value: bytes | None) -> None:
        stored = await self._producer.send(self._topic, key.encode(), value)
        await asyncio.to_thread(self._view.view.wait_for, stored.partition, stored.offset)


class DeliveryStore:
    """The attempt log (latest WebhookDelivery per delivery id), indexed for paged queries."""

    def __init__(self, settings: Settings, serde: Serde) -> None:
        self._view = _View(settings, settings.topics.webhook_deliveries, serde.deliveries)
        self._index = DeliveryIndex()
        self._view.add_listener(self._index.on_change)

    async def start(self) -> None:
        await self._view.start()

    def stop(self) -> None:
        self._view.stop()

    def get(self, delivery_id: str) -> WebhookDelivery | None:
        return self._view.view.get(delivery_id)

    def page(self, where: DeliveryFilter, limit: int, after: SortKey | None) -> Page:
        """Up to ``limit`` deliveries matching ``where``, newest first, after the cursor key."""
        get: Callable[[str], WebhookDelivery | None] = self._view.view.get
        return self._index.page(where, limit, after, get)

    def health(self) -> tuple[str, str | None]:
        """(topic, why the view is unhealthy or None)."""
        return self._view.health()
