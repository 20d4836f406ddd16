"""The whole platform as a user starts it: `cpevents dev up` and `cpevents demo` as processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from standardwebhooks.webhooks import Webhook as StandardWebhook

from cpevents.localkafka.broker import free_port
from schemas.secrets import generate_encryption_key
from tests.fixtures_delivery import Receiver, eventually


def _stack_env(kafka_bootstrap: str, home: Path, **extra: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        CPEVENTS_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CPEVENTS_TOPIC_PREFIX=f"dev{run}.",
        CPEVENTS_REGISTRY_TOPIC=f"_schemas_dev{run}",
        CPEVENTS_HOME=str(home),
        **extra,
    )
    return env


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def _read_until(stream: asyncio.StreamReader, marker: str, within: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            break
        seen.append(line.decode(errors="replace"))
        if marker in seen[-1]:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed; output so far:\n{''.join(seen)}")


async def test_dev_up_delivers_a_signed_event_and_stops_clean(
    kafka_bootstrap: str, receiver: Receiver, tmp_path: Path
) -> None:
    token = f"adm_{uuid.uuid4().hex}"
    env = _stack_env(
        kafka_bootstrap,
        tmp_path,
        CPEVENTS_ADMIN_TOKEN=token,
        CPEVENTS_SECRET_KEY=generate_encryption_key(),
    )
    gateway_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpevents", "dev", "up",
        "--registry-port", str(free_port()), "--gateway-port", str(gateway_port),
        "--streams-web-port", str(free_port()), "--delivery-web-port", str(free_port()),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        banner = await _read_until(process.stdout, "Ctrl-C stops everything", within=240)
        pids = [int(p) for p in re.findall(r"│ (\d+) +│", banner)]
        assert len(pids) == 4, banner  # registry, gateway, streams, delivery
        assert f"http://127.0.0.1:{gateway_port}/v1/webhooks" in banner  # the ready-to-copy curl

        gateway = f"http://127.0.0.1:{gateway_port}"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{gateway}/v1/webhooks", json={
                "tenant_id": "ten_e2e", "url": receiver.url("/hook"), "events": ["deploy.*"],
            }) as response:  # fmt: skip
                assert response.status == 201, await response.text()
                secret = (await response.json())["secret"]
            event = {"type": "deploy.failed", "tenant_id": "ten_e2e", "payload": {"why": "oom"}}
            async with http.post(f"{gateway}/v1/events", json=event) as response:
                assert response.status == 202, await response.text()
                [event_id] = (await response.json())["ids"]

        await eventually(lambda: bool(receiver.at("/hook")), within=60, what="the signed POST")
        [request] = receiver.at("/hook")
        verified = StandardWebhook(secret).verify(request.body, request.headers)
        assert verified["id"] == event_id and verified["payload"] == {"why": "oom"}
        assert request.headers["webhook-id"] == event_id
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        tail = await asyncio.wait_for(process.stdout.read(), timeout=90)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0, tail.decode()
    assert b"stopped" in tail
    assert _alive(pids) == []


def test_demo_shows_deliveries_a_retry_and_a_dead_letter(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cpevents", "demo"],
        env=_stack_env(kafka_bootstrap, tmp_path, COLUMNS="120"),
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "attempt 1: delivered" in out
    assert "attempt 1: retrying (HTTP 500)" in out
    assert "attempt 3: dead_lettered (HTTP 500)" in out
    assert "delivered: 5 with valid signatures (0 invalid)" in out
    assert "dead letters: 1" in out
