"""A second, secured broker for the session: one SASL_SSL listener (TLS with a CA made for the
run, SCRAM-SHA-512), the kind `cpevents kafka start --security sasl_ssl` runs, from the same
Maven jars as the plain test broker. Started on first use (about 10-20 s). And our schema
registry on it, as a ``cpevents registry`` process with HTTP Basic users (``secure_registry``).

Register with ``pytest_plugins`` (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
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


@dataclass(frozen=True)
class SecureRegistry:
    """Our registry on the secured broker, with an auth file; credentials as ``user:password``
    (the form of CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH)."""

    url: str
    writer: str  # registers and reads the test topics' subjects: what the services use
    reader: str  # reads them only: enough for replay


# Test settings' topic prefixes are ``t`` and ten hex digits (tests/conftest.py make_settings).
TEST_SUBJECTS = r"t[0-9a-f]{10}\..*"


def _add_user(auth_file: Path, user: str, password: str, *permission: str) -> str:
    # The documented way (README "Securing the registry"): the CLI, password on stdin.
    command = ["registry", "add-user", str(auth_file), user, *permission, "--password-stdin"]
    subprocess.run(
        [sys.executable, "-m", "cpevents", *command],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return f"{user}:{password}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_health", timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def secure_registry(
    secure_kafka: SecureKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRegistry]:
    """``cpevents registry`` on a free loopback port, storing on the secured broker (TLS and
    SCRAM) in a topic of its own, every request authenticated against an auth file."""
    directory = tmp_path_factory.mktemp("secure-registry")
    auth_file = directory / "users.json"
    writer = _add_user(auth_file, "services", uuid.uuid4().hex, "--write", TEST_SUBJECTS)
    reader = _add_user(auth_file, "audit", uuid.uuid4().hex, "--read", TEST_SUBJECTS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPEVENTS_")}
    env.update(secure_kafka.environment)
    env["CPEVENTS_REGISTRY_TOPIC"] = f"_schemas.secure.{uuid.uuid4().hex[:10]}"
    env["CPEVENTS_REGISTRY_AUTH_FILE"] = str(auth_file)
    log = directory / "registry.log"  # a file, not a pipe: nobody drains it for the session
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cpevents", "registry", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"the secured registry did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield SecureRegistry(url=url, writer=writer, reader=reader)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
