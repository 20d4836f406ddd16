"""``POST /v1/deliveries/{id}/retry``: find a delivery's dead-lettered task and re-enqueue it.

The task is located by scanning the delivery dead-letter topic (up to its end when the request
arrived); the newest record of that delivery is sent back to the deliveries topic with the
shared redrive primitive, so the worker treats it as a fresh task.
"""

from __future__ import annotations

import asyncio
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from plumbing.kafka.clients import consumer_config
from plumbing.kafka.deadletter import message_headers, redrive_record
from plumbing.settings import Settings
from producers.async_producer import AsyncProducer
from schemas.serde import DecodeError, Serde


class NotDeadLettered(LookupError):
    """The delivery has no record in the dead-letter topic."""


class DeliveryRedriver:
    """Sends dead-lettered delivery tasks back to ``settings.topics.deliveries``."""

    def __init__(self, settings: Settings, serde: Serde, producer: AsyncProducer) -> None:
        self._settings = settings
        self._serde = serde
        self._producer = producer

    async def redrive(self, delivery_id: str, webhook_id: str | None = None) -> None:
        """Re-enqueue the dead-lettered task of ``delivery_id``; NotDeadLettered if none."""
        found = await asyncio.to_thread(self._find, delivery_id, webhook_id)
        if found is None:
            raise NotDeadLettered(f"delivery {delivery_id} is not in the dead-letter topic")
        record = redrive_record(
            found.key(), found.value(), message_headers(found), self._settings.topics.deliveries
        )
        await self._producer.send(record.topic, record.key, record.value, record.headers)

    def _find(self, delivery_id: str, webhook_id: str | None) -> Message | None:
        topic = self._settings.topics.deliveries_dlt
        consumer = Consumer(consumer_config(self._settings, f"gateway-redrive-{uuid.uuid4().hex}"))
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            ends: dict[int, int] = {}
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    ends[partition] = high
            if not ends:
                return None
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
            found: Message | None = None
            wanted_key = webhook_id.encode() if webhook_id else None
            while ends:
                for message in consumer.consume(500, 1.0):
                    if message.error() is not None:
                        continue
                    partition = message.partition() or 0
                    if (message.offset() or 0) + 1 >= ends.get(partition, 0):
                        ends.pop(partition, None)
                    if wanted_key is not None and message.key() != wanted_key:
                        continue
                    try:
                        task = self._serde.tasks.decode(message.value(), topic)
                    except DecodeError:
                        continue
                    if task.id == delivery_id:
                        found = message
                self._drop_finished(consumer, topic, ends)
            return found
        finally:
            consumer.close()

    @staticmethod
    def _drop_finished(consumer: Consumer, topic: str, ends: dict[int, int]) -> None:
        # Transaction markers or compaction can leave the last offsets without a record.
        for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
            if tp.partition is not None and tp.offset >= ends.get(tp.partition, 0):
                ends.pop(tp.partition, None)
