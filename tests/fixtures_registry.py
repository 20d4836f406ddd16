"""Schema registry fixtures: a real registry (ours, in-process, on a free port) against the
session's Kafka broker, and helpers to run more instances on a topic of a test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plumbing.settings import Settings
from registry.server import RegistryThread


def registry_settings(
    kafka_bootstrap: str, topic: str | None = None, auth_file: Path | None = None
) -> Settings:
    """Settings for a registry on its own topic (unique unless ``topic`` is given), with the
    users and permissions of ``auth_file`` if given."""
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        registry_topic=topic or f"_schemas.test.{uuid.uuid4().hex[:10]}",
        registry_auth_file=auth_file,
    )


@pytest.fixture(scope="session")
def registry_url(kafka_bootstrap: str) -> Iterator[str]:
    """Base URL of a schema registry shared by the whole session (its own ``_schemas`` topic)."""
    with RegistryThread(registry_settings(kafka_bootstrap)) as registry:
        yield registry.url


@pytest.fixture
def registry_topic() -> str:
    """A fresh registry topic name for a test that starts its own instances."""
    return f"_schemas.test.{uuid.uuid4().hex[:10]}"
