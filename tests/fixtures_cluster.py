"""A throwaway three-node KRaft cluster and the whole pipeline on it, for the fault tests.

The cluster always runs here, from the Maven jars, on free ports with its data in a temporary
directory (even when ``CPEVENTS_BOOTSTRAP_SERVERS`` names another cluster): the tests kill its
brokers. Its JVMs, like every service process started here, die with the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from cpevents.localkafka.broker import die_with_parent, free_port
from cpevents.localkafka.cluster import LocalCluster, NodePorts, leader_counts
from delivery.worker import group_id as delivery_group
from plumbing.kafka.clients import admin_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from streams.app import app_id as streams_group
from tests.conftest import make_settings, settings_env

ADMIN_TOKEN = f"adm_{uuid.uuid4().hex}"
#: Seconds before a silent worker's partitions move (routers and delivery workers).
SESSION_TIMEOUT = 8


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three combined broker+controller nodes on free ports, killed at the end."""
    cluster = LocalCluster(
        settings=Settings(),
        root=tmp_path_factory.mktemp("cluster"),
        ports=[NodePorts(free_port(), free_port()) for _ in range(3)],
        tie_to_parent=True,
        # C1 and the serial GC: a node starts on 2.4 s of CPU instead of 6.3 s (G1 and C2).
        quick_jvm=True,
    )
    began = time.monotonic()
    cluster.start()
    print(f"FIGURE setup cluster_started_s={time.monotonic() - began:.1f}", flush=True)
    try:
        yield cluster
    finally:
        cluster.stop(kill=True)


def busiest_node(cluster: LocalCluster) -> int:
    """The node that leads the most partitions."""
    metadata = cluster.metadata()
    assert metadata is not None
    counts = leader_counts(metadata)
    return max(cluster.node_ids, key=lambda node: counts.get(node, 0))


@dataclass
class Proc:
    """One ``python -m cpevents`` service process, which can be killed and started again."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cpevents", *self.args],
                env=self.env,
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(sig)
        if self.process is not None:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name}:\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Pipeline:
    """Registry, gateway, routers and delivery workers on the cluster (RF and min ISR auto)."""

    settings: Settings
    gateway: str
    registry: str
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def logs(self) -> str:
        return "\n".join(proc.log_tail() for proc in self.procs.values())

    def kill(self, name: str) -> None:
        self.procs[name].signal(signal.SIGKILL)

    def restart(self, name: str) -> None:
        self.procs[name].start()

    def wait_members(self, group: str, members: int, timeout: float = 90.0) -> None:
        """Until ``group`` is stable with ``members`` members."""
        admin = AdminClient(admin_config(self.settings, log_level=0))
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            dead = [proc.log_tail() for proc in self.procs.values() if not proc.alive]
            assert not dead, "\n".join(dead)
            with contextlib.suppress(Exception):
                state = admin.describe_consumer_groups([group])[group].result(timeout=5)
                if state.state == ConsumerGroupState.STABLE and len(state.members) == members:
                    return
            time.sleep(0.3)
        raise AssertionError(f"group {group} not stable with {members} members: {state}\n")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.alive:
                assert proc.process is not None
                proc.process.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.signal(signal.SIGKILL)


def _wait_http(url: str, proc: Proc, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive, proc.log_tail()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if int(response.status) < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready:\n{proc.log_tail()}")


@contextlib.contextmanager
def running_pipeline(
    cluster: LocalCluster, log_dir: Path, routers: int = 1, deliveries: int = 1
) -> Iterator[Pipeline]:
    """The platform on ``cluster``: its own topic prefix and registry topic, ``routers``
    streams workers and ``deliveries`` delivery workers."""
    began = time.monotonic()
    registry_port, gateway_port = free_port(), free_port()
    settings = make_settings(
        cluster.bootstrap_servers,
        schema_registry_url=f"http://127.0.0.1:{registry_port}",
        registry_topic=f"_schemas.{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        replication_factor="auto",
        min_insync_replicas="auto",
    )
    ensure_topics(settings)
    # Seconds from the start to the end of each step, printed with the set-up figure.
    steps = {"topics_s": time.monotonic() - began}
    env = {
        **os.environ,
        **settings_env(settings),
        "CPEVENTS_ADMIN_TOKEN": ADMIN_TOKEN,
        "CPEVENTS_DELIVERY_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CPEVENTS_PARTITIONS": str(settings.partitions),
        "CPEVENTS_REPLICATION_FACTOR": "auto",
        "CPEVENTS_MIN_INSYNC_REPLICAS": "auto",
        # Short enough that a killed worker's partitions move within a test.
        "CPEVENTS_DELIVERY_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
        "PYTHONUNBUFFERED": "1",
    }
    pipeline = Pipeline(
        settings, gateway=f"http://127.0.0.1:{gateway_port}", registry=settings.schema_registry_url
    )
    log_dir.mkdir(parents=True, exist_ok=True)

    def add(name: str, *args: str) -> Proc:
        proc = Proc(name, list(args), env, log_dir / f"{name}.log")
        pipeline.procs[name] = proc
        proc.start()
        return proc

    try:
        # The workers start (imports, group joins: most of the set-up's CPU) while the registry
        # and then the gateway come up: they need the registry only for their first record.
        registry = add("registry", "registry", "--host", "127.0.0.1", "--port", str(registry_port))
        for n in range(routers):
            add(
                f"router-{n}",
                *("worker", "streams", "--web-port", str(free_port())),
                *("--session-timeout", str(SESSION_TIMEOUT)),
            )
        for n in range(deliveries):
            add(f"delivery-{n}", "worker", "delivery", "--web-port", str(free_port()))
        _wait_http(f"{pipeline.registry}/subjects", registry)
        steps["registry_s"] = time.monotonic() - began
        gateway = add("gateway", "gateway", "--host", "127.0.0.1", "--port", str(gateway_port))
        _wait_http(f"{pipeline.gateway}/healthz", gateway)
        steps["gateway_s"] = time.monotonic() - began
        pipeline.wait_members(streams_group(settings), routers)
        pipeline.wait_members(delivery_group(settings), deliveries)
        steps["pipeline_ready_s"] = time.monotonic() - began
        print("FIGURE setup", *(f"{k}={v:.1f}" for k, v in steps.items()), flush=True)
        yield pipeline
    finally:
        pipeline.stop()


# -- the flow of events and what the receiver got -----------------------------------------------


def partition_of(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``: CRC-32 of the
    key) gives ``key``: the gateway keys events by tenant, the router tasks by webhook id."""
    return zlib.crc32(key.encode()) % partitions


def new_tenant() -> str:
    return f"ten_{uuid.uuid4().hex[:12]}"


@dataclass
class Flow:
    """Events published through the gateway (each retried with its ``Idempotency-Key`` until
    accepted) for one or more tenants, each with one webhook, and their deliveries."""

    pipeline: Pipeline
    tenants: list[str] = field(default_factory=lambda: [new_tenant()])
    webhooks: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    publish_retries: int = 0

    async def add_webhooks(self, url: str) -> None:
        """One webhook to ``url`` for each tenant."""
        async with aiohttp.ClientSession(headers=self.pipeline.auth) as http:
            for tenant in self.tenants[len(self.webhooks) :]:
                self.webhooks.append(await self._add_webhook(http, tenant, url))

    async def cover_partitions(self, url: str) -> None:
        """Tenants and webhooks (to ``url``) until the events cover every partition of the
        events topic and their delivery tasks every partition of the deliveries topic."""
        assert not self.webhooks, "cover_partitions starts a flow"
        partitions = self.pipeline.settings.partitions
        self.tenants = []
        while len(self.tenants) < partitions:
            tenant = new_tenant()
            if partition_of(tenant, partitions) not in {
                partition_of(t, partitions) for t in self.tenants
            }:
                self.tenants.append(tenant)
        await self.add_webhooks(url)
        while len({partition_of(w, partitions) for w in self.webhooks}) < partitions:
            assert len(self.tenants) < 30, f"webhook ids all on few partitions: {self.webhooks}"
            self.tenants.append(new_tenant())
            await self.add_webhooks(url)

    async def _add_webhook(self, http: aiohttp.ClientSession, tenant: str, url: str) -> str:
        body = {"tenant_id": tenant, "url": url, "events": ["deploy.*"]}
        async with http.post(f"{self.pipeline.gateway}/v1/webhooks", json=body) as response:
            assert response.status == 201, await response.text()
            webhook_id: str = (await response.json())["id"]
            return webhook_id

    async def publish(
        self, count: int | None, interval: float, until: asyncio.Event | None = None
    ) -> int:
        """Publish ``count`` events (``None``: until ``until`` is set), one every ``interval``
        seconds, round robin over the tenants; the number published."""
        timeout = aiohttp.ClientTimeout(total=15)
        published = 0
        async with aiohttp.ClientSession(headers=self.pipeline.auth, timeout=timeout) as http:
            while count is None or published < count:
                if until is not None and until.is_set():
                    break
                await self._publish_one(http, published)
                published += 1
                await asyncio.sleep(interval)
        return published

    async def _publish_one(self, http: aiohttp.ClientSession, n: int) -> None:
        key = uuid.uuid4().hex
        tenant = self.tenants[n % len(self.tenants)]
        event = {"type": "deploy.started", "tenant_id": tenant, "payload": {"n": n}}
        deadline = time.monotonic() + 120
        while True:
            try:
                async with http.post(
                    f"{self.pipeline.gateway}/v1/events",
                    json=event,
                    headers={"Idempotency-Key": key},
                ) as response:
                    if response.status == 202:
                        self.accepted.extend((await response.json())["ids"])
                        return
                    error = f"{response.status} {await response.text()}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = repr(exc)
            self.publish_retries += 1
            assert time.monotonic() < deadline, f"event {n} never accepted: {error}"
            await asyncio.sleep(0.5)


def delivered_ids(requests: list[dict[str, str]]) -> dict[str, set[str]]:
    """Event id -> the ``webhook-id`` headers it was delivered with."""
    seen: dict[str, set[str]] = {}
    for request in requests:
        seen.setdefault(request["event_id"], set()).add(request["webhook_id"])
    return seen


def received(bodies: list[tuple[bytes, dict[str, str]]]) -> list[dict[str, str]]:
    """(event id, webhook-id) of each POST the receiver got."""
    return [
        {"event_id": json.loads(body)["id"], "webhook_id": headers.get("webhook-id", "")}
        for body, headers in bodies
    ]
