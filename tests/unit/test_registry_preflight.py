"""The registry start-up check (plumbing/registry_client.py ``check_registry_access``) against a
stand-in registry over HTTP and HTTPS: what passes, what fails at once naming the setting, what
is waited for, and that no password reaches the message. The real registry and the services are
in tests/integration/test_kafka_security.py."""

from __future__ import annotations

import base64
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from cpevents.localkafka.broker import free_port
from cpevents.localkafka.tls import write_broker_tls, write_ca_certificate
from plumbing.registry_client import (
    RegistryAccessError,
    check_registry_access,
    registry_client_config,
)
from plumbing.settings import Settings

USER_INFO = "svc:s3cret-pw"


class FakeRegistry(BaseHTTPRequestHandler):
    """``GET /subjects``: 200 for ``USER_INFO``, 401 otherwise (as ours with an auth file)."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(USER_INFO.encode()).decode()
        if urlsplit(self.path).path != "/subjects":
            self._answer(404, b'{"error_code": 404, "message": "HTTP 404 Not Found"}')
        elif self.headers.get("Authorization") != expected:
            self._answer(401, b'{"error_code": 40101, "message": "Unauthorized"}')
        else:
            self._answer(200, b"[]")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def _serve(context: ssl.SSLContext | None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_registry() -> Iterator[str]:
    yield from _serve(None)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-tls")


@pytest.fixture(scope="module")
def https_registry(tls_dir: Path) -> Iterator[tuple[str, Path]]:
    tls = write_broker_tls(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.keystore)
    for url in _serve(context):
        yield url, tls.ca_certificate


def settings(url: str, basic_auth: str | None = None, ca: Path | None = None) -> Settings:
    return Settings(
        schema_registry_url=url,
        schema_registry_basic_auth=SecretStr(basic_auth) if basic_auth else None,
        schema_registry_ca_location=ca,
    )


def test_the_right_credentials_pass(http_registry: str) -> None:
    check_registry_access(settings(http_registry, USER_INFO), timeout=5)


@pytest.mark.parametrize(
    ("basic_auth", "hint"),
    [("svc:wrong-pw", "check CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH"), (None, "set CPEVENTS_")],
)
def test_refused_credentials_fail_at_once_naming_the_setting(
    http_registry: str, basic_auth: str | None, hint: str
) -> None:
    started = time.monotonic()
    with pytest.raises(RegistryAccessError, match="HTTP 401") as refused:
        check_registry_access(settings(http_registry, basic_auth), timeout=15)
    assert time.monotonic() - started < 5  # at the refusal, not at the timeout
    assert hint in str(refused.value)
    assert "CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH" in str(refused.value)
    assert "wrong-pw" not in str(refused.value)


def test_credentials_in_the_url_are_used_and_never_shown(
    http_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the HTTP library logs each request's URL at INFO
    right = http_registry.replace("http://", "http://svc:s3cret-pw@")
    assert registry_client_config(settings(right)) == {
        "url": http_registry,
        "basic.auth.user.info": USER_INFO,
    }
    check_registry_access(settings(right), timeout=5)
    wrong = http_registry.replace("http://", "http://svc:url-secret@")
    with pytest.raises(RegistryAccessError, match="HTTP 401") as refused:
        check_registry_access(settings(wrong), timeout=5)
    assert "url-secret" not in str(refused.value)
    assert "***@127.0.0.1" in str(refused.value)
    assert caplog.records, "no request logged: the log check would prove nothing"
    assert "s3cret-pw" not in caplog.text and "url-secret" not in caplog.text


def test_a_url_that_is_no_registry_names_the_url(http_registry: str) -> None:
    with pytest.raises(RegistryAccessError, match=r"HTTP 404.*CPEVENTS_SCHEMA_REGISTRY_URL"):
        check_registry_access(settings(f"{http_registry}/not-here", USER_INFO), timeout=5)


def test_tls_trusts_the_configured_ca_only(https_registry: tuple[str, Path], tls_dir: Path) -> None:
    url, ca = https_registry
    check_registry_access(settings(url, USER_INFO, ca), timeout=5)
    other = write_ca_certificate(tls_dir / "other-ca.pem", "not the registry's CA")
    started = time.monotonic()
    with pytest.raises(RegistryAccessError, match="CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION"):
        check_registry_access(settings(url, USER_INFO, other), timeout=15)
    assert time.monotonic() - started < 5
    with pytest.raises(RegistryAccessError, match="CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION"):
        check_registry_access(settings(url, USER_INFO), timeout=15)  # system CAs


def test_no_answer_is_waited_for_then_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    started = time.monotonic()
    with pytest.raises(RegistryAccessError, match=r"within 2s.*CPEVENTS_SCHEMA_REGISTRY_URL"):
        check_registry_access(settings(url, USER_INFO), timeout=2)
    assert 2 <= time.monotonic() - started < 8


def test_the_in_process_mock_needs_no_check() -> None:
    check_registry_access(settings("mock://preflight"), timeout=0)
