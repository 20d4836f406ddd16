"""A second, secured broker for the session: one SASL_SSL listener (TLS with a CA made for the
run, SCRAM-SHA-512), the kind `cpevents kafka start --security sasl_ssl` runs, from the same
Maven jars as the plain test broker. Started on first use (about 10-20 s).

Register with ``pytest_plugins`` (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpevents.localkafka.broker import LocalBroker, free_port
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from tests.conftest import make_settings, settings_env


@dataclass(frozen=True)
class SecureKafka:
    """How to reach the secured broker."""

    environment: dict[str, str]  # CPEVENTS_* variables, password included
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return self.environment["CPEVENTS_BOOTSTRAP_SERVERS"]

    @property
    def password(self) -> str:
        return self.environment["CPEVENTS_KAFKA_SASL_PASSWORD"]

    @property
    def ca(self) -> Path:
        return Path(self.environment["CPEVENTS_KAFKA_SSL_CA_LOCATION"])

    def settings_fields(self) -> dict[str, object]:
        """The security settings as ``Settings`` keyword arguments."""
        return {
            key.removeprefix("CPEVENTS_").lower(): value
            for key, value in self.environment.items()
            if key.startswith("CPEVENTS_KAFKA_")
        }


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A SASL_SSL-only broker on free loopback ports, stopped at the end of the session."""
    broker = LocalBroker(
        # A small heap: this broker holds a few tests' topics, beside the main test broker.
        settings=Settings(kafka_heap="512m"),
        data_dir=tmp_path_factory.mktemp("secure-kafka"),
        port=free_port(),
        controller_port=free_port(),
        tie_to_parent=True,
        security="sasl_ssl",
    )
    broker.start()
    try:
        yield SecureKafka(environment=broker.client_environment(), data_dir=broker.data_dir)
    finally:
        broker.stop()


@pytest.fixture
def secure_settings(secure_kafka: SecureKafka, registry_url: str) -> Settings:
    """Test settings on the secured broker (the session's registry, unauthenticated), with the
    catalog's topics created through the secured admin client."""
    settings = make_settings(
        secure_kafka.bootstrap, schema_registry_url=registry_url, **secure_kafka.settings_fields()
    )
    ensure_topics(settings)
    return settings


def secure_env(settings: Settings, secure_kafka: SecureKafka, **changes: str) -> dict[str, str]:
    """Environment for ``cpevents`` subprocesses on the secured broker, with ``changes``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPEVENTS_KAFKA_")}
    env.update(settings_env(settings))
    env.update(secure_kafka.environment)
    env.update(changes)
    return env
