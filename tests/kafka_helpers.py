"""Reading topics back in integration tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message

from plumbing.kafka.clients import consumer_config
from plumbing.settings import Settings


def read_all(
    settings: Settings, topics: list[str], expected: int, timeout: float = 30.0
) -> list[Message]:
    """Read ``topics`` from the beginning until ``expected`` records arrived (or time runs out)."""
    consumer = Consumer(consumer_config(settings, f"reader-{uuid.uuid4().hex}"))
    consumer.subscribe(topics)
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(message.error())
            records.append(message)
    finally:
        consumer.close()
    return records
