"""Reading topics back in integration tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

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


class FlakyConsumer:
    """A real consumer whose ``poll`` raises while ``failures`` is positive (a test seam for
    the restart paths of views and Bus subscriptions)."""

    failures = 0  # shared by every consumer the factory makes: the restarted one is healthy

    def __init__(self, config: dict[str, Any]) -> None:
        self._consumer = Consumer(config)

    def poll(self, timeout: float) -> Any:
        if FlakyConsumer.failures > 0:
            FlakyConsumer.failures -= 1
            raise RuntimeError("injected poll failure")
        return self._consumer.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)
