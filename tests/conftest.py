"""Shared fixtures. Integration tests get a real Kafka broker, resolved once per session:
CPEVENTS_BOOTSTRAP_SERVERS if set, else Docker (testcontainers), else a local JVM broker."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from schemas.secrets import generate_encryption_key

pytest_plugins = [
    "tests.fixtures_registry",
    "tests.fixtures_delivery",
    "tests.fixtures_secure_kafka",
]

TEST_RETRY_TIERS = ("50ms", "200ms", "500ms")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka cluster for the whole test session."""
    with kafka_cluster(Settings()) as servers:
        yield servers


def make_settings(kafka_bootstrap: str, **overrides: object) -> Settings:
    """Settings for one test: its own topic prefix so tests never see each other's records.

    The registry defaults to an in-process ``mock://`` one; integration tests that involve other
    processes pass ``schema_registry_url=registry_url`` (the session's real registry).
    """
    values: dict[str, object] = {
        "bootstrap_servers": kafka_bootstrap,
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "schema_registry_url": f"mock://{uuid.uuid4().hex}",
        "retry_tiers": TEST_RETRY_TIERS,
        "partitions": 3,
        "secret_key": generate_encryption_key(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(kafka_bootstrap: str, registry_url: str) -> Settings:
    """Settings pointing at the session's broker and registry, with the catalog's topics."""
    test_settings = make_settings(kafka_bootstrap, schema_registry_url=registry_url)
    ensure_topics(test_settings)
    return test_settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CPEVENTS_*`` variables that make a ``cpevents`` command use ``settings``."""
    return {
        "CPEVENTS_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
        "CPEVENTS_TOPIC_PREFIX": settings.topic_prefix,
        "CPEVENTS_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "CPEVENTS_SECRET_KEY": settings.secret_key.get_secret_value()
        if settings.secret_key
        else "",
        "CPEVENTS_RETRY_TIERS": json.dumps(list(settings.retry_tiers)),
        "CPEVENTS_REGISTRY_TOPIC": settings.registry_topic,
    }


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running ``cpevents`` subprocesses against the test's settings."""
    return {**os.environ, **settings_env(settings)}
