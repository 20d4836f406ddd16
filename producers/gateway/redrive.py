"""``POST /v1/deliveries/{id}/retry``: find a delivery's dead-lettered task and re-enqueue it.

The task is located by scanning the delivery dead-letter topic (up to its end when the request
arrived); the newest record of that delivery is sent back to the deliveries topic with the
shared redrive primitive, so the worker treats it as a fresh task.
"""

from __future__ import annotations

import asyncio

from confluent_kafka import Message

from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.deadletter import message_headers, present_records, redrive_record
from plumbing.settings import Settings
from schemas.serde import DecodeError, Serde


class NotDeadLettered(LookupError):
    """The delivery has no record in the dead-letter topic."""


class DeliveryRedriver:
    """Sends dead-lettered delivery tasks back to ``settings.topics.deliveries``."""

    def __init__(
        self, settings: Settings, serde: Serde, producer: AsyncProducer, timeout: float = 30.0
    ) -> None:
        self._settings = settings
        self._serde = serde
        self._producer = producer
        self._timeout = timeout

    async def redrive(self, delivery_id: str, webhook_id: str | None = None) -> None:
        """Re-enqueue the dead-lettered task of ``delivery_id``; NotDeadLettered if none.

        TimeoutError if the dead-letter topic cannot be read within the timeout."""
        found = await asyncio.to_thread(self._find, delivery_id, webhook_id)
        if found is None:
            raise NotDeadLettered(f"delivery {delivery_id} is not in the dead-letter topic")
        record = redrive_record(
            found.key(), found.value(), message_headers(found), self._settings.topics.deliveries
        )
        await self._producer.send_batch([record])

    def _find(self, delivery_id: str, webhook_id: str | None) -> Message | None:
        topic = self._settings.topics.deliveries_dlt
        wanted_key = webhook_id.encode() if webhook_id else None
        found: Message | None = None
        for message in present_records(self._settings, topic, self._timeout, "gateway-redrive"):
            if wanted_key is not None and message.key() != wanted_key:
                continue
            try:
                task = self._serde.tasks.decode(message.value(), topic)
            except DecodeError:
                continue
            if task.id == delivery_id:
                found = message  # the newest wins: keep scanning to the end
        return found
