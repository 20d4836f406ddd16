"""What the pipeline wrote, read as it is written: routed tasks (the deliveries topic), attempt
records (the attempt log), and dead letters (deliveries and events dead-letter topics).

One consumer thread, no group membership (partitions assigned from the beginning, nothing
committed), decoding each record to a small tuple; the soak's event loop takes them with
:meth:`Observer.take` and applies them to its ledger, so the ledger has one writer.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from plumbing.kafka.clients import consume_available, consumer_config
from plumbing.kafka.deadletter import message_headers, parse_dead_letter
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.serde import DecodeError

Observation = tuple[Any, ...]


class Observer:
    """Reads the pipeline's output topics in a thread; ``take()`` returns what was read."""

    def __init__(self, settings: Settings) -> None:
        topics = settings.topics
        self._routed = topics.deliveries
        self._attempts = topics.webhook_deliveries
        self._dlt = topics.deliveries_dlt
        self._router_dlt = topics.events_dlt
        self._settings = settings
        self._serde = serde_for(settings)
        self._found: deque[Observation] = deque()
        self._stop = threading.Event()
        self.undecodable = 0
        self.read = 0
        self._thread = threading.Thread(target=self._run, name="soak-observer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take(self) -> list[Observation]:
        taken = []
        while self._found:
            taken.append(self._found.popleft())
        return taken

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def _run(self) -> None:
        config = consumer_config(self._settings, f"soak-observer-{uuid.uuid4().hex}")
        consumer = Consumer(config)
        try:
            wanted = [self._routed, self._attempts, self._dlt, self._router_dlt]
            metadata = consumer.list_topics(timeout=30)
            consumer.assign(
                [
                    TopicPartition(topic, partition, OFFSET_BEGINNING)
                    for topic in wanted
                    for partition in metadata.topics[topic].partitions
                ]
            )
            while not self._stop.is_set():
                for message in consume_available(consumer, 500, 0.5):
                    if message.error() is None:
                        self.read += 1
                        self._observe(message)
        finally:
            consumer.close()

    def _observe(self, message: Message) -> None:
        topic = message.topic()
        value = message.value()
        try:
            if topic == self._routed:
                task = self._serde.task_json(value, topic)
                self._found.append(("routed", task.event.id, task.webhook_id))
            elif topic == self._attempts:
                if value is None:
                    return  # a compaction tombstone
                record = self._serde.deliveries.decode(value, topic)
                self._found.append(
                    ("attempt", record.event_id, record.webhook_id, str(record.status),
                     record.error)
                )  # fmt: skip
            elif topic == self._dlt:
                reason = parse_dead_letter(message_headers(message)).reason
                task = self._serde.task_json(value, topic)
                self._found.append(("dead_letter", task.event.id, task.webhook_id, reason))
            else:
                reason = parse_dead_letter(message_headers(message)).reason
                self._found.append(("router_dead_letter", reason))
        except DecodeError:
            self.undecodable += 1
