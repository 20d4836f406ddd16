"""Find a Kafka cluster: the configured one, else a Docker container, else a local JVM broker."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cpevents.localkafka.broker import LocalBroker, free_port
from plumbing.settings import Settings

# Kafka 4.x in KRaft mode; Confluent Platform 8.0 ships Apache Kafka 4.0.
KAFKA_IMAGE = "confluentinc/cp-kafka:8.0.0"


def docker_engine_reachable() -> bool:
    """True if a Docker engine answers a ping (the client alone is not enough)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def kafka_cluster(settings: Settings) -> Iterator[str]:
    """Yield bootstrap servers for a throwaway cluster; whatever was started is stopped after.

    Order: ``CPEVENTS_BOOTSTRAP_SERVERS`` if set; a reachable Docker engine (testcontainers);
    a local JVM broker on free loopback ports with its data in a temporary directory.
    """
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    if docker_engine_reachable():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with tempfile.TemporaryDirectory(prefix="cpevents-kafka-") as data_dir:
        broker = LocalBroker(
            settings=settings,
            data_dir=Path(data_dir),
            port=free_port(),
            controller_port=free_port(),
            tie_to_parent=True,
        )
        broker.start()
        try:
            yield broker.bootstrap_servers
        finally:
            broker.stop()
