"""The local broker's cluster id (reused across restarts, never taken for an option), and which
cluster ``kafka_cluster`` picks with and without the optional ``docker`` extra."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cpevents.localkafka import resolve
from cpevents.localkafka.broker import _kafka_cluster_id
from plumbing.settings import Settings


def test_a_new_cluster_id_never_starts_with_a_dash(tmp_path: Path) -> None:
    # Kafka's storage tool reads "-t -AbC..." as an unknown option: one id in 64 broke start-up.
    ids = {_kafka_cluster_id(tmp_path) for _ in range(5000)}
    assert len(ids) == 5000
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert all(len(cluster_id) == 22 for cluster_id in ids)


def test_formatted_storage_keeps_its_cluster_id(tmp_path: Path) -> None:
    properties = ["#Sat Nov 28 20:35:10 UTC 2026", "node.id=1", "cluster.id=9zYiJ7cWRCKLSwmuTjCEuQ"]
    (tmp_path / "meta.properties").write_text("\n".join(properties) + "\n")
    assert _kafka_cluster_id(tmp_path) == "9zYiJ7cWRCKLSwmuTjCEuQ"


# -- which cluster: configured, a Docker container (the 'docker' extra), or the local broker ----


class FakeBroker:
    """Stands in for LocalBroker: no JVM in a unit test, only what kafka_cluster calls."""

    started: ClassVar[list[FakeBroker]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.port = kwargs["port"]
        self.running = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.running = True
        FakeBroker.started.append(self)

    def stop(self) -> None:
        self.running = False


@contextlib.contextmanager
def fake_docker_engine(status: bytes = b"200 OK") -> Iterator[str]:
    """A socket answering one ``GET /_ping`` like a Docker engine; yields its DOCKER_HOST."""
    # A short directory: a unix socket path is limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="cpev-", dir="/tmp") as directory:
        path = os.path.join(directory, "docker.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        requests: list[bytes] = []

        def answer() -> None:
            with contextlib.suppress(OSError):
                connection, _ = server.accept()
                with connection:
                    requests.append(connection.recv(1024))
                    connection.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nOK")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            yield f"unix://{path}"
        finally:
            server.close()
            thread.join(5)
        assert all(r.startswith(b"GET /_ping ") for r in requests)


@pytest.fixture
def without_docker_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if ``pip install ctrlplane-events`` without ``[docker]``: both imports fail."""
    for name in ("testcontainers", "testcontainers.kafka", "docker"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    monkeypatch.setattr(resolve, "LocalBroker", FakeBroker)
    FakeBroker.started.clear()


def unconfigured() -> Settings:
    return Settings().model_copy(update={"bootstrap_servers": None})


def test_without_the_extra_the_local_broker_is_used_and_the_engine_mentioned(
    without_docker_extra: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with fake_docker_engine() as docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
        caplog.set_level(logging.INFO, logger=resolve.__name__)
        with resolve.kafka_cluster(unconfigured()) as servers:
            (broker,) = FakeBroker.started
            assert broker.running and servers == broker.bootstrap_servers
    assert not broker.running  # stopped on exit
    (record,) = [r for r in caplog.records if r.name == resolve.__name__]
    assert record.levelno == logging.INFO
    assert "Docker engine answers but testcontainers is not installed" in record.getMessage()
    assert "ctrlplane-events[docker]" in record.getMessage()


def test_without_the_extra_and_without_an_engine_nothing_is_said(
    without_docker_extra: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    caplog.set_level(logging.DEBUG, logger=resolve.__name__)
    with resolve.kafka_cluster(unconfigured()) as servers:
        assert servers == FakeBroker.started[0].bootstrap_servers
    assert not [r for r in caplog.records if r.name == resolve.__name__]
    assert not resolve.docker_engine_reachable()  # the SDK cannot even be imported


def test_configured_servers_start_nothing(without_docker_extra: None) -> None:
    settings = Settings().model_copy(update={"bootstrap_servers": "kafka.example:9092"})
    with resolve.kafka_cluster(settings) as servers:
        assert servers == "kafka.example:9092"
    assert FakeBroker.started == []


def test_with_the_extra_and_an_engine_a_container_is_used(
    without_docker_extra: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    images: list[str] = []

    class FakeContainer:
        def __init__(self, image: str) -> None:
            images.append(image)

        def with_kraft(self) -> FakeContainer:
            return self

        def __enter__(self) -> FakeContainer:
            return self

        def __exit__(self, *exc: object) -> None:
            images.append("stopped")

        def get_bootstrap_server(self) -> str:
            return "container:9093"

    monkeypatch.setattr(resolve, "_kafka_container_class", lambda: FakeContainer)
    monkeypatch.setattr(resolve, "docker_engine_reachable", lambda: True)
    with resolve.kafka_cluster(unconfigured()) as servers:
        assert servers == "container:9093"
    assert images == [resolve.KAFKA_IMAGE, "stopped"]
    assert FakeBroker.started == []


def test_the_extra_is_detected_by_import(without_docker_extra: None) -> None:
    assert resolve._kafka_container_class() is None


@pytest.mark.parametrize(("status", "answers"), [(b"200 OK", True), (b"500 Server Error", False)])
def test_docker_engine_answers_on_a_unix_socket(
    status: bytes, answers: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_docker_engine(status) as docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
        assert resolve.docker_engine_answers() is answers


def test_docker_engine_answers_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"HTTP/1.1 200 OK\r\n\r\nOK")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
        assert resolve.docker_engine_answers()
    finally:
        thread.join(5)
        server.close()


@pytest.mark.parametrize(
    "docker_host",
    [
        "ssh://user@host",
        "tcp://127.0.0.1:notaport",
        "unix:///nonexistent/docker.sock",
        "tcp://127.0.0.1:1",
    ],
)
def test_docker_engine_answers_is_false_when_nothing_answers(
    docker_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert not resolve.docker_engine_answers(timeout=0.5)


def test_an_engine_without_testcontainers_falls_back_to_the_local_broker(
    without_docker_extra: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Docker SDK may be installed for other reasons: a reachable engine is not enough.
    monkeypatch.setattr(resolve, "docker_engine_reachable", lambda: True)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with resolve.kafka_cluster(unconfigured()) as servers:
        assert servers == FakeBroker.started[0].bootstrap_servers


# -- the SASL_SSL broker (`cpevents kafka start --security sasl_ssl`) ----------------------------


def _properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_a_sasl_ssl_broker_has_no_plaintext_listener_for_clients(tmp_path: Path) -> None:
    from cpevents.localkafka.broker import LocalBroker

    broker = LocalBroker(
        settings=Settings(), data_dir=tmp_path, port=19092, controller_port=19093,
        security="sasl_ssl",
    )  # fmt: skip
    config = _properties(broker._write_config())
    assert config["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert config["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["ssl.keystore.type"] == "PEM"
    assert (tmp_path / "server.properties").stat().st_mode & 0o077 == 0  # holds the password
    env = broker.client_environment()
    assert env["CPEVENTS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert (
        env["CPEVENTS_KAFKA_SASL_PASSWORD"]
        in config["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert (
        env["CPEVENTS_KAFKA_SASL_PASSWORD"]
        == broker.client_environment()["CPEVENTS_KAFKA_SASL_PASSWORD"]
    )  # made once: the formatted storage keeps the SCRAM credentials
    client = broker.client_settings()
    assert client.kafka_security_protocol == "SASL_SSL"
    assert client.bootstrap_servers == "127.0.0.1:19092"


def test_the_default_brokers_keep_their_storage_apart() -> None:
    from cpevents.localkafka.broker import default_broker

    settings = Settings()
    plain, secure = default_broker(settings), default_broker(settings, "sasl_ssl")
    assert plain.data_dir != secure.data_dir and plain.port == secure.port
    plain_config = plain.client_settings()
    assert plain_config.kafka_security_protocol == "PLAINTEXT"


def test_the_broker_certificate_names_the_loopback_address(tmp_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509

    from cpevents.localkafka.tls import write_broker_tls

    tls = write_broker_tls(tmp_path)
    assert tls.valid_for(datetime.timedelta(days=7))
    assert tls.keystore.stat().st_mode & 0o077 == 0
    pem = tls.keystore.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM store reads
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate(tls.ca_certificate.read_bytes())
    cert.verify_directly_issued_by(ca)
