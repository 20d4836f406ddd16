"""Kafka client configuration shared by every component, so that guarantees are set in one place."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from plumbing.kafka.security import extra_properties, security_properties
from plumbing.settings import Settings


def bootstrap(settings: Settings) -> str:
    """The bootstrap servers to use: the configured cluster or the local default broker."""
    return settings.bootstrap_servers or f"127.0.0.1:{settings.kafka_port}"


def connection_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What every client needs to reach the cluster: bootstrap servers, security (TLS, SASL) and
    the further properties of ``CPEVENTS_KAFKA_CONFIG``, then ``overrides``.

    The result holds secrets in clear: pass it to a client, never to a log (see
    ``plumbing.kafka.security.redacted``).
    """
    # CPEVENTS_KAFKA_CONFIG comes after the role's tuning defaults (an operator may tune
    # linger.ms or compression) but cannot touch the guarantees or the security properties:
    # plumbing.kafka.security refuses those at start.
    return {
        "bootstrap.servers": bootstrap(settings),
        **overrides,
        **extra_properties(settings),
        **security_properties(settings),
    }


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A durable producer: acks=all and idempotence, so retries never reorder or duplicate."""
    config = connection_config(
        settings,
        **{
            "compression.type": "lz4",
            # Each event is on the latency path (publish → POST); batches still form under load.
            "linger.ms": 1,
        },
    )
    config.update({"acks": "all", "enable.idempotence": True})
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """An at-least-once consumer: no auto-commit; callers commit after their work is durable."""
    config = connection_config(settings, **{"auto.offset.reset": "earliest"})
    config.update(
        {"group.id": group_id, "enable.auto.commit": False, "isolation.level": "read_committed"}
    )
    config.update(overrides)
    return config


def admin_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """An admin client (topics, groups, metadata) of the configured cluster."""
    config = connection_config(settings)
    config.update(overrides)
    return config


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


# ListOffsets specs (for admin ``list_offsets``), made once: the library builds a new object per
# call and has no type annotations for them.
EARLIEST_OFFSET = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST_OFFSET = OffsetSpec.latest()  # type: ignore[no-untyped-call]
