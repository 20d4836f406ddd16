"""A real gateway on a free loopback port, run in its own thread and event loop so that sync
clients (schemathesis, urllib, the CLI) and async tests can all call it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.gateway.server import serve
from schemas.serde import Serde
from tests.conftest import make_settings

TENANT_TOKENS = {"tok-tenant-a": "ten_a", "tok-tenant-b": "ten_b"}
ADMIN_TOKEN = "tok-admin"
MAX_BODY = 64 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunningGateway:
    url: str
    settings: Settings
    serde: Serde

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def gateway_settings(base: Settings) -> Settings:
    """``base`` plus gateway settings: a free port, two tenants' tokens and an admin token."""
    return base.model_copy(
        update={
            "gateway_host": "127.0.0.1",
            "gateway_port": free_port(),
            "tenant_tokens": json.dumps(TENANT_TOKENS),
            "admin_token": ADMIN_TOKEN,
            "gateway_max_body_bytes": MAX_BODY,
            "secret_rotation_overlap": 3600.0,
        }
    )


@contextmanager
def run_gateway(base: Settings) -> Iterator[RunningGateway]:
    """Serve a gateway for ``base``'s topics until the block ends."""
    # model_copy skips validation: re-validate so SecretStr fields are typed as in production.
    settings = Settings(**gateway_settings(base).model_dump(mode="python"))
    serde = serde_for(settings)
    loop = asyncio.new_event_loop()
    ready = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await serve(settings, ready, serde)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    task = loop.create_task(main())
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()
    if not asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready.wait(), 60), loop).result(70):
        raise RuntimeError("gateway did not start")
    if failure:
        raise RuntimeError("gateway failed to start") from failure[0]
    try:
        yield RunningGateway(f"http://127.0.0.1:{settings.gateway_port}", settings, serde)
    finally:
        loop.call_soon_threadsafe(task.cancel)
        asyncio.run_coroutine_threadsafe(asyncio.wait([task], timeout=30), loop).result(40)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[RunningGateway]:
    """A gateway on the test's own topics."""
    with run_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
def module_gateway(kafka_bootstrap: str, registry_url: str) -> Iterator[RunningGateway]:
    """One gateway (and topic set) shared by a module's tests."""
    base = make_settings(kafka_bootstrap, schema_registry_url=registry_url)
    ensure_topics(base)
    with run_gateway(base) as running:
        yield running
