"""Kafka client configuration shared by every component, so that guarantees are set in one place."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message

from plumbing.settings import Settings


def bootstrap(settings: Settings) -> str:
    """The bootstrap servers to use: the configured cluster or the local default broker."""
    return settings.bootstrap_servers or f"127.0.0.1:{settings.kafka_port}"


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A durable producer: acks=all and idempotence, so retries never reorder or duplicate."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap(settings),
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        # Each event is on the latency path (publish → POST); batches still form under load.
        "linger.ms": 1,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """An at-least-once consumer: no auto-commit; callers commit after their work is durable."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


def admin_config(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap(settings)}


def consume_available(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Wait up to ``timeout`` for one message, then take what is already fetched (no more wait).

    ``Consumer.consume(n, timeout)`` waits until ``n`` messages arrived *or* the timeout passed,
    so under light traffic every call costs the full timeout in latency; this returns as soon
    as anything is there, and still batches under load.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    rest: list[Message] = consumer.consume(num_messages=max_messages - 1, timeout=0)
    return [first, *rest]
