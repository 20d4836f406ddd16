"""Delivery worker throughput against its ceiling, and retry lateness.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/delivery.py [--tasks 3000]

Without CPEVENTS_BOOTSTRAP_SERVERS it starts a throwaway broker. A receiver runs in its own
process on a free 127.0.0.1 port. The ceiling is a bare aiohttp client posting the same bodies
to the same receiver with the same concurrency, in the same run. Targets: worker >= 60 % of the
ceiling; retry lateness p99 <= 500 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the
# `delivery` package it measures.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import pstats
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from cpevents.kafka.clients import admin_config, producer_config
from cpevents.kafka.local import free_port
from cpevents.kafka.resolve import kafka_cluster
from cpevents.kafka.topics import ensure_topics
from cpevents.settings import Settings
from delivery.registry import register_schemas
from delivery.sender import USER_AGENT
from delivery.signing import signature_headers
from delivery.worker import DeliveryWorker
from schemas import ids
from schemas.delivery import DeliveryTask
from schemas.event import Event
from schemas.secrets import SecretBox, generate_encryption_key, generate_secret
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import EncryptedSecret, Webhook

CONCURRENCY = 64
WARM_UP = 500


def run_receiver(port: int) -> None:
    """Count POSTs per path; /flaky answers 500 to an event's first attempt, 200 after."""
    times: dict[str, list[float]] = {}
    counts: dict[str, list[float]] = {}

    async def post(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        counts.setdefault(request.path, []).append(now)
        if request.path == "/flaky":
            seen = times.setdefault(request.headers["webhook-id"], [])
            seen.append(now)
            if len(seen) == 1:
                return web.Response(status=500)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        path = request.query.get("path", "/ok")
        stamps = counts.get(path, [])
        return web.json_response(
            {
                "count": len(stamps),
                "first": min(stamps, default=0),
                "last": max(stamps, default=0),
                "times": times if path == "/flaky" else {},
                "cpu": time.process_time(),
            }
        )

    async def reset(request: web.Request) -> web.Response:
        counts.pop(request.query.get("path", ""), None)
        return web.Response()

    app = web.Application()
    app.router.add_post("/reset", reset)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", post)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def receiver_stats(session: aiohttp.ClientSession, base: str, path: str) -> dict[str, Any]:
    async with session.get(f"{base}/stats?path={path}") as r:
        data: dict[str, Any] = await r.json()
        return data


async def wait_count(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    count: int,
    within: float = 300,
    poll: float = 0.1,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        stats = await receiver_stats(session, base, path)
        if stats["count"] >= count or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(poll)


async def ceiling(
    session: aiohttp.ClientSession, base: str, requests: list[tuple[bytes, dict[str, str]]]
) -> float:
    """Bare aiohttp posts of the same bodies and headers, same concurrency: deliveries/s.

    Timed like the worker, from the first to the last POST the receiver saw, so neither side
    is charged for starting up (the worker's connections are already warm).
    """
    queue = list(requests)
    async with session.post(f"{base}/reset?path=/bare"):
        pass
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:

        async def post_all() -> None:
            while queue:
                body, headers = queue.pop()
                async with s.post(f"{base}/bare", data=body, headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(post_all() for _ in range(CONCURRENCY)))
    stats = await receiver_stats(session, base, "/bare")
    count, first, last = float(stats["count"]), float(stats["first"]), float(stats["last"])
    return count / max(last - first, 1e-9)


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (every process: the broker, other users)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """Wall time and CPU seconds of this process, the receiver and the machine over one phase."""

    wall: float = 0.0
    cpu: float = 0.0
    receiver_cpu: float = 0.0
    machine_cpu: float = 0.0

    def report(self, name: str, deliveries: int) -> str:
        return (
            f"{name:<8} cpu/delivery {1e6 * self.cpu / deliveries:6.0f} us   "
            f"receiver busy {100 * self.receiver_cpu / self.wall:4.0f} % of one core   "
            f"machine busy {self.machine_cpu / self.wall:4.1f} of {os.cpu_count()} cores"
        )


@contextlib.asynccontextmanager
async def measured(session: aiohttp.ClientSession, base: str, phase: Phase) -> AsyncIterator[None]:
    receiver_cpu = (await receiver_stats(session, base, "/"))["cpu"]
    wall, cpu, machine = time.perf_counter(), time.process_time(), machine_cpu()
    yield
    phase.wall = time.perf_counter() - wall
    phase.cpu = time.process_time() - cpu
    phase.machine_cpu = machine_cpu() - machine
    phase.receiver_cpu = (await receiver_stats(session, base, "/"))["cpu"] - receiver_cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(bootstrap: str, tasks: int, retries: int, profile: str | None) -> None:
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        schema_registry_url=f"mock://{uuid.uuid4().hex}",
        retry_tiers=("500ms", "1s"),
        secret_key=SecretStr(generate_encryption_key()),
        delivery_allowed_networks=("127.0.0.0/8",),
        delivery_per_endpoint_limit=CONCURRENCY,
        delivery_breaker_failures=100_000,
        delivery_jitter=0.1,
    )
    ensure_topics(settings)
    try:
        await measure(settings, tasks, retries, profile)
    finally:
        # The cluster may be shared: leave no bench topics behind.
        names = [spec.name for spec in settings.topics.specs(settings.partitions)]
        admin = AdminClient(admin_config(settings))  # kept alive until every future resolves
        for future in admin.delete_topics(names).values():
            future.result(timeout=30)


async def measure(settings: Settings, tasks: int, retries: int, profile: str | None) -> None:
    serde = Serde(settings.schema_registry_url)
    register_schemas(serde, settings.topics)
    port = free_port()
    receiver = multiprocessing.Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    base = f"http://127.0.0.1:{port}"
    session = aiohttp.ClientSession()
    for _ in range(100):
        try:
            await receiver_stats(session, base, "/ok")
            break
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)

    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key.get_secret_value())
    producer = Producer(producer_config(settings))
    secret = generate_secret()

    def webhook(path: str) -> Webhook:
        hook = Webhook(
            id=ids.new_id(ids.WEBHOOK),
            tenant_id="ten_bench",
            url=f"{base}{path}",
            secrets=(EncryptedSecret(box.encrypt(secret), utc_now()),),
        )
        topic = settings.topics.webhooks
        producer.produce(topic, key=hook.id, value=serde.webhooks.encode(hook, topic))
        return hook

    def prepare_tasks(hook: Webhook, count: int) -> list[tuple[bytes, bytes, DeliveryTask]]:
        made = []
        topic = settings.topics.deliveries
        for n in range(count):
            event = Event.new("instance.created", "ten_bench").with_payload(
                {"n": n, "pad": "x" * 64}
            )
            task = DeliveryTask.for_event(event, hook.id, hook.url)
            # Spread one webhook's tasks over every partition, as many tenants' would be.
            made.append((str(n).encode(), serde.tasks.encode(task, topic), task))
        return made

    def send_tasks(prepared: list[tuple[bytes, bytes, DeliveryTask]]) -> None:
        for key, value, _task in prepared:
            producer.produce(settings.topics.deliveries, key=key, value=value)
            producer.poll(0)
        producer.flush(60)

    def produce_tasks(hook: Webhook, count: int) -> list[DeliveryTask]:
        prepared = prepare_tasks(hook, count)
        send_tasks(prepared)
        return [task for _key, _value, task in prepared]

    # The measured tasks are encoded now but produced only once the worker has delivered a
    # warm-up batch: start-up and the consumer group join stay out of the figures, which
    # describe the worker in its steady state.
    produce_tasks(webhook("/warm"), WARM_UP)
    ok = webhook("/ok")
    prepared = prepare_tasks(ok, tasks)
    made = [task for _key, _value, task in prepared]
    # The ceiling sends what the worker sends: the same bodies with the same headers.
    requests = []
    for task in made:
        body = task.event.to_json().encode()
        headers = signature_headers(task.event.id, int(time.time()), body, [secret])
        requests.append(
            (body, {"content-type": "application/json", "user-agent": USER_AGENT, **headers})
        )

    # The ceiling runs before and after the worker, with no worker running; the better one counts.
    bare_before, bare_after, worker_phase = Phase(), Phase(), Phase()
    async with measured(session, base, bare_before):
        bare_rates = [await ceiling(session, base, requests)]

    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde=serde).run(stop))
    await wait_count(session, base, "/warm", WARM_UP)
    profiler = cProfile.Profile() if profile else None
    async with measured(session, base, worker_phase):
        if profiler is not None:
            profiler.enable()
        send_tasks(prepared)
        stats = await wait_count(session, base, "/ok", tasks, poll=0.01)
        if profiler is not None:
            profiler.disable()
    worker_rate = stats["count"] / max(stats["last"] - stats["first"], 1e-9)

    flaky = webhook("/flaky")
    retried = produce_tasks(flaky, retries)
    stats = await wait_count(session, base, "/flaky", 2 * retries)
    lateness = []
    delay = 0.5
    for attempts in stats["times"].values():
        if len(attempts) >= 2:
            # The first retry tier is 500 ms with up to 10 % jitter: due in [0.5, 0.55] s.
            lateness.append((attempts[1] - attempts[0] - delay) * 1000)
    stop.set()
    await worker

    async with measured(session, base, bare_after):
        bare_rates.append(await ceiling(session, base, requests))
    await session.close()
    receiver.terminate()

    bare_rate = max(bare_rates)
    print(json.dumps({"tasks": tasks, "concurrency": CONCURRENCY}, indent=None))
    print(f"worker deliveries/s      {worker_rate:10.0f}")
    print(
        f"ceiling (bare aiohttp)/s {bare_rate:10.0f}   "
        f"(before {bare_rates[0]:.0f}, after {bare_rates[1]:.0f})"
    )
    print(f"worker / ceiling         {100 * worker_rate / bare_rate:9.0f} %   (target >= 60 %)")
    print(worker_phase.report("worker", tasks))
    print(bare_before.report("bare", tasks))
    if lateness:
        print(
            f"retry lateness ms past the 500 ms tier (n={len(lateness)}, incl. <= 50 ms jitter): "
            f"p50 {statistics.median(lateness):.0f}, p99 {percentile(lateness, 0.99):.0f}, "
            f"min {min(lateness):.0f}   (target p99 <= 500)"
        )
    print(f"retried tasks: {len(retried)}, with a second attempt: {len(lateness)}")
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--retries", type=int, default=300)
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the event loop while the worker delivers"
    )
    args = parser.parse_args()
    with kafka_cluster(
        Settings(bootstrap_servers=os.environ.get("CPEVENTS_BOOTSTRAP_SERVERS"))
    ) as servers:
        asyncio.run(bench(servers, args.tasks, args.retries, args.profile))


if __name__ == "__main__":
    main()
