"""Kafka client configuration shared by every component, so that guarantees are set in one place."""

from __future__ import annotations

from typing import Any

from cpevents.settings import Settings


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
        "linger.ms": 5,
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
