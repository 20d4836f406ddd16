"""Find a Kafka cluster: the configured one, else a Docker container, else a local JVM broker.

The container needs the optional ``docker`` extra (testcontainers and the Docker SDK); without
it, or without a Docker engine, the local JVM broker is used, which needs nothing extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cpevents.localkafka.broker import LocalBroker, free_port
from plumbing.settings import Settings

logger = logging.getLogger(__name__)

# Kafka 4.x in KRaft mode; Confluent Platform 8.0 ships Apache Kafka 4.0.
KAFKA_IMAGE = "confluentinc/cp-kafka:8.0.0"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_engine_reachable() -> bool:
    """True if the Docker SDK is installed and an engine answers a ping (the client alone is not
    enough)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # ImportError without the extra; any client or engine failure alike
        return False
    return True


def docker_engine_answers(timeout: float = 1.0) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` at ``DOCKER_HOST`` (default: the local
    socket), with the standard library only, so it works without the ``docker`` extra.

    Only plain ``unix://`` and ``tcp://`` hosts are probed; anything else (ssh, TLS) counts as
    no answer, since this only decides whether to mention the missing extra.
    """
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    address: str | tuple[str, int]
    try:
        if host.startswith("unix://"):
            family, address = socket.AF_UNIX, host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rstrip("/").rpartition(":")
            family, address = socket.AF_INET, (name, int(port))
        else:
            return False
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except (OSError, ValueError):  # no socket, refused, timeout, or a malformed DOCKER_HOST
        return False
    return status_line.split()[1:2] == [b"200"]


def _kafka_container_class() -> Callable[[str], Any] | None:
    """testcontainers' KafkaContainer, or None when the ``docker`` extra is not installed."""
    try:
        from testcontainers.kafka import KafkaContainer
    except ImportError:
        return None
    container_class: Callable[[str], Any] = KafkaContainer
    return container_class


@contextlib.contextmanager
def kafka_cluster(settings: Settings) -> Iterator[str]:
    """Yield bootstrap servers for a throwaway cluster; whatever was started is stopped after.

    Order: ``CPEVENTS_BOOTSTRAP_SERVERS`` if set; a reachable Docker engine (testcontainers,
    the ``docker`` extra); a local JVM broker on free loopback ports with its data in a
    temporary directory.
    """
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    container_class = _kafka_container_class()
    if container_class is not None and docker_engine_reachable():
        with container_class(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    if container_class is None and docker_engine_answers():
        # Probed only when the extra is missing: an operator with Docker would otherwise wonder
        # why a JVM broker starts instead of a container.
        logger.info(
            "a Docker engine answers but testcontainers is not installed: using the local JVM "
            "broker (install the 'docker' extra, ctrlplane-events[docker], for a container)"
        )
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
