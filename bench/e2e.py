"""End to end: publish → router → delivery → signed POST received, everything on this machine.

    .venv/bin/python bench/e2e.py [--events 5000] [--rate 200] [--seconds 15]

Starts the whole stack as `cpevents dev up` does (a throwaway Kafka unless
CPEVENTS_BOOTSTRAP_SERVERS is set; registry, gateway, streams and delivery workers as processes),
a receiver in its own process, and one webhook for every event. Prints:
- sustained throughput (events published with KafkaBus.publish_many until the last signed POST
  arrived) and, in the same run, the ceiling: a bare aiohttp client posting the same bodies to
  the same receiver with the same concurrency;
- latency (event timestamp → POST received) p50/p99/max at a fixed publish rate.
Targets (the README's benchmark table): throughput >= 50 % of the ceiling; at 200 events/s
p50 <= 10 ms, p99 <= 25 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path; the project root must.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from cpevents.cli.dev import platform_services
from cpevents.localkafka.broker import free_port
from cpevents.stack import LocalStack, StackPorts, throwaway_environment
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType
from schemas.timestamps import parse_rfc3339

CONCURRENCY = 64
TENANT = "ten_bench"


def run_receiver(port: int) -> None:
    """Count POSTs and record each event's latency (arrival minus the event's timestamp)."""
    arrivals: list[float] = []
    latencies: list[float] = []

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        arrivals.append(now)
        if request.path == "/hook":
            stamp = parse_rfc3339(json.loads(body)["timestamp"], "timestamp").timestamp()
            latencies.append(now - stamp)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"count": len(arrivals), "first": min(arrivals, default=0.0),
             "last": max(arrivals, default=0.0), "latencies": latencies}
        )  # fmt: skip

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        latencies.clear()
        return web.Response()

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", post)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/stats") as response:
        data: dict[str, Any] = await response.json()
        return data


async def wait_for_count(
    http: aiohttp.ClientSession, base: str, count: int, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        current = await stats(http, base)
        if current["count"] >= count or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


async def ceiling(base: str, bodies: list[bytes]) -> float:
    """Bare aiohttp: the same bodies to the same receiver, same concurrency. Posts/s."""
    queue = list(bodies)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                headers = {"content-type": "application/json", "webhook-id": "x"}
                async with http.post(f"{base}/bare", data=body, headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(bodies) / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_events(count: int) -> list[Event]:
    types = list(EventType)
    return [
        Event.new(types[i % len(types)], TENANT).with_payload(
            {"seq": i, "name": "api", "replicas": 3, "labels": {"team": "core", "tier": "gold"}}
        )
        for i in range(count)
    ]


async def measure(stack: LocalStack, receiver: str, args: argparse.Namespace, token: str) -> None:
    gateway = f"http://127.0.0.1:{stack.ports.gateway}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway}/v1/webhooks",
            json={"tenant_id": TENANT, "url": f"{receiver}/hook", "events": []},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 201, await response.text()
        bus = KafkaBus(stack.settings)
        try:
            # Warm-up: the router must have the webhook and every process its connections.
            for attempt in range(100):
                await bus.publish_many(make_events(20))
                if (await wait_for_count(http, receiver, 20 * (attempt + 1), 3))["count"]:
                    break
            await asyncio.sleep(2)
            await http.post(f"{receiver}/reset")

            events = make_events(args.events)
            started = time.time()
            for index in range(0, len(events), 1000):
                await bus.publish_many(events[index : index + 1000])
            published = time.time()
            done = await wait_for_count(http, receiver, len(events), within=600)
            pipeline_rate = done["count"] / (done["last"] - started)

            ceiling_rate = await ceiling(receiver, [e.to_json().encode() for e in events])
            await http.post(f"{receiver}/reset")

            interval = 1.0 / args.rate
            total = int(args.rate * args.seconds)
            t0 = time.monotonic()
            for index in range(total):
                delay = t0 + index * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await bus.publish(make_events(1)[0])
            latency = await wait_for_count(http, receiver, total, within=120)
        finally:
            await bus.close()

    lat_ms = [1000 * value for value in latency["latencies"]]
    print(f"machine: {os.cpu_count()} cores; everything (Kafka, 4 services, receiver, publisher)")
    print(f"events: {args.events}; published in {published - started:.2f}s")
    print(f"pipeline throughput        {pipeline_rate:8.0f} events/s")
    print(f"ceiling (bare aiohttp)     {ceiling_rate:8.0f} posts/s")
    print(
        f"pipeline / ceiling         {100 * pipeline_rate / ceiling_rate:8.0f} %   (target >= 50 %)"
    )
    print(
        f"latency at {args.rate}/s for {args.seconds}s (n={len(lat_ms)} of {total}): "
        f"p50 {percentile(lat_ms, 0.5):.1f} ms, p99 {percentile(lat_ms, 0.99):.1f} ms, "
        f"max {max(lat_ms):.1f} ms   (targets p50 <= 10, p99 <= 50)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()

    base = Settings()
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={"topic_prefix": f"e2e{run}.", "registry_topic": f"_schemas_e2e{run}"}
    )
    token = f"bench_{run}"
    extra_env = throwaway_environment(token)
    port = free_port()
    receiver = multiprocessing.Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    with tempfile.TemporaryDirectory(prefix="cpevents-e2e-") as logs:
        stack = LocalStack(settings, platform_services, StackPorts.free(), Path(logs), extra_env,
                           ephemeral_kafka=True)  # fmt: skip
        with stack.running(on_progress=lambda message: print(f"  {message}", file=sys.stderr)):
            asyncio.run(measure(stack, f"http://127.0.0.1:{port}", args, token))
    receiver.terminate()


if __name__ == "__main__":
    main()
