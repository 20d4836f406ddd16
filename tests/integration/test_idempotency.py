"""``Idempotency-Key`` across two gateway processes and a restart, on the real broker:
concurrent duplicates publish one set of events and all get its answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from tests.conftest import settings_env
from tests.fixtures_gateway import ADMIN_TOKEN, TENANT_TOKENS, free_port
from tests.fixtures_streams import TopicReader

ROOT = Path(__file__).resolve().parents[2]
A = {"Authorization": "Bearer tok-tenant-a"}
BATCH = [{"type": "instance.created", "tenant_id": "ten_a", "payload": {"n": n}} for n in range(3)]


@contextmanager
def gateway_process(settings: Settings, port: int) -> Iterator[str]:
    """``cpevents gateway`` in a subprocess on ``port``; its base URL once /healthz is 200."""
    env = {
        **settings_env(settings),
        "PATH": "/usr/bin:/bin",
        "CPEVENTS_TENANT_TOKENS": json.dumps(TENANT_TOKENS),
        "CPEVENTS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    log = Path(f"/tmp/cpevents-gateway-{port}.log").open("wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "cpevents", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "gateway did not become healthy"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


async def post(url: str, body: Any, key: str) -> tuple[int, Any]:
    headers = {**A, "Idempotency-Key": key}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/events", json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def published_ids(settings: Settings) -> list[str]:
    """The ids of every event on the instance topic."""
    topic = settings.topics.events("instance")
    serde = serde_for(settings)
    reader = TopicReader(settings, topic)
    try:
        return [serde.events.decode(m.value(), topic).id for m in reader.read_to_end()]
    finally:
        reader.close()


def test_concurrent_duplicates_on_two_gateways_publish_once_and_survive_a_restart(
    settings: Settings,
) -> None:
    port_1, port_2 = free_port(), free_port()
    with gateway_process(settings, port_1) as gw_1, gateway_process(settings, port_2) as gw_2:

        async def duplicates() -> list[tuple[int, Any]]:
            urls = [gw_1, gw_2] * 4
            return await asyncio.gather(*(post(url, BATCH, "order-42") for url in urls))

        answers = asyncio.run(duplicates())
        assert {status for status, _ in answers} == {202}, answers
        ids = answers[0][1]["ids"]
        assert len(ids) == 3 and all(body["ids"] == ids for _, body in answers)
        assert sorted(published_ids(settings)) == sorted(ids)  # one set of events, not eight

        status, problem = asyncio.run(post(gw_2, BATCH[:1], "order-42"))
        assert status == 422 and problem["field"] == "Idempotency-Key", problem
        status, other = asyncio.run(post(gw_2, BATCH[:1], "order-43"))
        assert status == 202 and other["ids"] != ids[:1]

    # Both gone; a new gateway reads the answers back from the topic.
    with gateway_process(settings, free_port()) as gw_3:
        status, again = asyncio.run(post(gw_3, BATCH, "order-42"))
        assert status == 202 and again["ids"] == ids
    assert sorted(published_ids(settings)) == sorted(ids + other["ids"])
