"""End to end: publish → router → delivery → signed POST received, everything on this machine.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/e2e.py \
        [--events 10000] [--rate 200] [--seconds 10] [--paced-rate 500] \
        [--phases idle,wide,paced,single,latency] [--profile DIR]

Starts the whole stack as `cpevents dev up` does (a throwaway Kafka unless
CPEVENTS_BOOTSTRAP_SERVERS is set; registry, gateway, streams and delivery workers as processes)
and receivers in two processes of their own. The load is realistic: 10 tenants with 5 webhooks
each, every webhook its own endpoint (a port of one of the two receiver processes) and
subscribed to a fifth of the event types, so each event has exactly one delivery. Prints:
- sustained throughput (events published with KafkaBus.publish_many until the last signed POST
  arrived) and, in the same run, the ceiling: a bare aiohttp client (a process of its own)
  posting the same bodies to the same endpoints with the same concurrency; then the same for
  one endpoint alone (one webhook: the per-endpoint limit bounds it);
- CPU per delivered event of every process of ours (registry, gateway, router, delivery
  worker, the Kafka broker's JVM; receivers excluded), from /proc before and after the
  throughput phase; and the same at a fixed moderate rate (``--paced-rate`` events/s over the
  50 webhooks for ``--seconds``): as fast as possible, the rate (and so the batching, and the
  CPU per event) depends on what else the machine runs; at a fixed rate the CPU per event of
  two builds compares under load too; and the CPU each process spends idle (no traffic).
  The router's and the delivery worker's CPU is split by thread (from /proc/<pid>/task): the
  main thread (asyncio), librdkafka's (``rdk:*``), and Python's other threads (``python``);
- latency (event timestamp → POST received) p50/p99 at a fixed publish rate, alone and beside
  an endpoint that never answers (another address, the same rate of events).
Targets (the README's benchmark table): throughput >= 50 % of the ceiling; CPU <= 250 us per
event; at 200 events/s p50 <= 10 ms, p99 <= 25 ms; beside a hanging endpoint p99 within 1.5x.
With a shared broker (CPEVENTS_BOOTSTRAP_SERVERS), its CPU includes other clients' traffic.
``--profile DIR`` records each Python process of ours with py-spy during the paced phase (the
wide one without it): DIR/<process>.txt, collapsed stacks (``py-spy record --format raw``); the
sampling costs the processes CPU too, so that phase's CPU figures are not comparable then.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path; the project root must.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
TENANTS = 10
HOOKS_PER_TENANT = 5
HANGING_HOST = "127.0.0.2"
TYPES = list(EventType)


# -- receivers ------------------------------------------------------------------------------------


def run_receiver(ports: list[int], hang_port: int | None) -> None:
    """Serve every port of ``ports`` (and ``HANGING_HOST:hang_port``, whose ``/hang`` never
    answers) until SIGTERM. Counts POSTs; for ``/lat*`` paths keeps each event's latency
    (arrival minus the event's timestamp)."""
    arrivals: list[float] = []
    latencies: dict[str, list[float]] = {}
    closing = asyncio.Event()

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        path = request.path
        if path == "/hang":
            await closing.wait()
            return web.Response(status=503)
        arrivals.append(now)
        if path.startswith("/lat"):
            stamp = parse_rfc3339(json.loads(body)["timestamp"], "timestamp").timestamp()
            latencies.setdefault(path, []).append(now - stamp)
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

    async def serve() -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        app.router.add_post("/{tail:.*}", post)
        # Not web.run_app: its SIGTERM cancels hanging requests with a traceback each.
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        if hang_port is not None:
            await web.TCPSite(runner, HANGING_HOST, hang_port).start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, closing.set)
        await closing.wait()
        await runner.cleanup()

    asyncio.run(serve())


@dataclass
class Receivers:
    """The two receiver processes and the endpoints (ports) each serves."""

    ports: list[list[int]]  # per process
    hang_port: int
    processes: list[Any]

    @classmethod
    def start(cls, endpoints: int) -> Receivers:
        half = (endpoints + 1) // 2
        ports = [[free_port() for _ in range(half)], [free_port() for _ in range(half)]]
        hang_port = free_port()
        processes = [
            multiprocessing.Process(target=run_receiver, args=(ports[0], None), daemon=True),
            multiprocessing.Process(target=run_receiver, args=(ports[1], hang_port), daemon=True),
        ]
        for process in processes:
            process.start()
        return cls(ports, hang_port, processes)

    @property
    def endpoints(self) -> list[str]:
        """Every endpoint's base URL, alternating between the processes."""
        return [
            f"http://127.0.0.1:{port}"
            for pair in zip(self.ports[0], self.ports[1], strict=True)
            for port in pair
        ]

    @property
    def hanging(self) -> str:
        return f"http://{HANGING_HOST}:{self.hang_port}/hang"

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(10)

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Counts and latencies of both processes together."""
        total: dict[str, Any] = {"count": 0, "first": 0.0, "last": 0.0, "latencies": {}}
        for ports in self.ports:
            async with http.get(f"http://127.0.0.1:{ports[0]}/stats") as response:
                part = await response.json()
            total["count"] += part["count"]
            if part["count"]:
                firsts = [v for v in (total["first"], part["first"]) if v]
                total["first"] = min(firsts)
                total["last"] = max(total["last"], part["last"])
            for path, values in part["latencies"].items():
                total["latencies"].setdefault(path, []).extend(values)
        return total

    async def reset(self, http: aiohttp.ClientSession) -> None:
        for ports in self.ports:
            async with http.post(f"http://127.0.0.1:{ports[0]}/reset"):
                pass

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                await self.stats(http)
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the receivers did not start")

    async def wait_for(
        self, http: aiohttp.ClientSession, count: int, within: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            current = await self.stats(http)
            if current["count"] >= count or time.monotonic() > deadline:
                return current
            await asyncio.sleep(0.05)


# -- the ceiling ----------------------------------------------------------------------------------


async def bare_posts(requests: list[tuple[str, bytes]]) -> None:
    queue = list(requests)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while queue:
                url, body = queue.pop()
                headers = {"content-type": "application/json", "webhook-id": "x"}
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def run_ceiling(requests: list[tuple[str, bytes]], ready: Any, go: Any) -> None:
    ready.set()
    go.wait()
    asyncio.run(bare_posts(requests))


async def ceiling(
    http: aiohttp.ClientSession, receivers: Receivers, requests: list[tuple[str, bytes]]
) -> float:
    """Bare aiohttp in a process of its own: posts/s from the first to the last POST the
    receivers saw (as the pipeline is timed)."""
    await receivers.reset(http)
    spawn = multiprocessing.get_context("spawn")
    ready, go = spawn.Event(), spawn.Event()
    client = spawn.Process(target=run_ceiling, args=(requests, ready, go))
    client.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ready.wait, 60)
    go.set()
    await loop.run_in_executor(None, client.join)
    done = await receivers.stats(http)
    await receivers.reset(http)
    return float(done["count"]) / max(float(done["last"]) - float(done["first"]), 1e-9)


# -- CPU of every process of ours -----------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each of process ``pid``'s threads, by thread name (digits dropped, so
    librdkafka's ``rdk:broker12`` threads add up under ``rdk:broker``; Python's own threads
    other than the main one under the process name)."""
    totals: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")].rstrip("0123456789-_")
        if task.name == str(pid):
            name = "main thread"  # Python 3.11 names no thread: the others keep the comm
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def broker_pid(bootstrap: str) -> int | None:
    """The local Kafka broker's JVM serving ``bootstrap`` (one on this machine), if found."""
    port = bootstrap.rsplit(":", 1)[-1].split(",")[0]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "java" in cmdline and "kafka.Kafka" in cmdline:
            found.append((int(entry.name), cmdline))
    if len(found) > 1:  # several brokers: the one whose configuration names the port
        found = [(pid, cmd) for pid, cmd in found if port in cmd or _config_names(cmd, port)]
    return found[0][0] if len(found) == 1 else None


def _config_names(cmdline: str, port: str) -> bool:
    for word in cmdline.split():
        if word.endswith(".properties") and Path(word).exists():
            return f":{port}" in Path(word).read_text()
    return False


def our_processes(stack: LocalStack) -> dict[str, int]:
    pids = {s.name: s.process.pid for s in stack.services if s.process is not None}
    broker = broker_pid(stack.settings.bootstrap_servers or "127.0.0.1:9092")
    if broker is not None:
        pids["broker (JVM)"] = broker
    return pids


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each process, and (``name/thread``) of each thread of the workers."""
    snapshot = {name: process_cpu(pid) for name, pid in pids.items()}
    for name in ("streams", "delivery"):
        if name in pids:
            for thread, seconds in thread_cpu(pids[name]).items():
                snapshot[f"{name}/{thread}"] = seconds
    return snapshot


# -- load -----------------------------------------------------------------------------------------


def tenant(index: int) -> str:
    return f"ten_bench{index:02d}"


def make_events(count: int, tenant_id: str | None = None, start: int = 0) -> list[Event]:
    """``count`` events spread over the tenants and every event type (or all for
    ``tenant_id``); event ``i``'s type picks its tenant's webhook ``type index % 5``."""
    events = []
    for i in range(start, start + count):
        event_type = TYPES[(i // TENANTS) % len(TYPES)]
        owner = tenant_id or tenant(i % TENANTS)
        events.append(
            Event.new(event_type, owner).with_payload(
                {"seq": i, "name": "api", "replicas": 3, "labels": {"team": "core", "tier": "gold"}}
            )
        )
    return events


def hook_url(receivers: Receivers, tenant_index: int, hook: int) -> str:
    base = receivers.endpoints[tenant_index * HOOKS_PER_TENANT + hook]
    return f"{base}/hook/t{tenant_index}k{hook}"


async def register(
    http: aiohttp.ClientSession, gateway: str, token: str, body: dict[str, Any]
) -> None:
    for _ in range(5):  # a busy machine may time a request out: try again
        async with http.post(
            f"{gateway}/v1/webhooks", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status == 201:
                return
            text = await response.text()
        await asyncio.sleep(1)
    raise RuntimeError(f"registering a webhook failed: {response.status} {text}")


async def register_webhooks(
    http: aiohttp.ClientSession, gateway: str, token: str, receivers: Receivers
) -> None:
    """50 webhooks over 10 tenants, each its own endpoint and a fifth of the types; then the
    single endpoint's, the latency probes' and the hanging one's (tenants of their own)."""
    for t in range(TENANTS):
        for k in range(HOOKS_PER_TENANT):
            types = [str(e) for i, e in enumerate(TYPES) if i % HOOKS_PER_TENANT == k]
            body = {"tenant_id": tenant(t), "url": hook_url(receivers, t, k), "events": types}
            await register(http, gateway, token, body)
    extra = receivers.endpoints[TENANTS * HOOKS_PER_TENANT :]
    for tenant_id, url in (
        ("ten_single", f"{extra[0]}/single"),
        ("ten_lat", f"{extra[1]}/lat"),
        ("ten_lat2", f"{extra[1]}/lat2"),
        ("ten_hang", receivers.hanging),
    ):
        await register(http, gateway, token, {"tenant_id": tenant_id, "url": url, "events": []})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Throughput:
    events: int
    rate: float
    ceiling: float
    cpu: dict[str, float]  # seconds per process over the phase


async def throughput(
    http: aiohttp.ClientSession,
    bus: KafkaBus,
    receivers: Receivers,
    pids: dict[str, int],
    events: list[Event],
    urls: list[str],
    args: argparse.Namespace,
    phase: str,
) -> Throughput:
    """Publish ``events`` until every POST arrived; the bare ceiling of the same bodies to
    ``urls`` (each event's endpoint) after."""
    await receivers.reset(http)
    before = cpu_snapshot(pids)
    started = time.time()
    with profiling(args, phase, pids):
        for index in range(0, len(events), 1000):
            await bus.publish_many(events[index : index + 1000])
        done = await receivers.wait_for(http, len(events), within=600)
    after = cpu_snapshot(pids)
    rate = done["count"] / max(done["last"] - started, 1e-9)
    requests = [(url, e.to_json().encode()) for url, e in zip(urls, events, strict=True)]
    bare = await ceiling(http, receivers, requests)
    cpu = {name: after[name] - before.get(name, 0.0) for name in after}
    return Throughput(int(done["count"]), rate, bare, cpu)


async def paced_cpu(
    http: aiohttp.ClientSession,
    bus: KafkaBus,
    receivers: Receivers,
    pids: dict[str, int],
    args: argparse.Namespace,
) -> Throughput:
    """CPU per event at ``--paced-rate`` events/s over the 50 webhooks, for ``--seconds``:
    publishes a slice every 10 ms (on schedule, whatever the pipeline does), then waits for
    every POST. No ceiling: the rate is fixed."""
    await receivers.reset(http)
    total = int(args.paced_rate * args.seconds)
    events = make_events(total)
    before = cpu_snapshot(pids)
    with profiling(args, "paced", pids):
        started = t0 = time.monotonic()
        step = max(1, args.paced_rate // 100)
        for n, index in enumerate(range(0, total, step)):
            delay = t0 + n * step / args.paced_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await bus.publish_many(events[index : index + step])
        done = await receivers.wait_for(http, total, within=600)
        rate = done["count"] / max(time.monotonic() - started, 1e-9)
    after = cpu_snapshot(pids)
    cpu = {name: after[name] - before.get(name, 0.0) for name in after}
    return Throughput(int(done["count"]), rate, float("nan"), cpu)


@contextlib.contextmanager
def profiling(args: argparse.Namespace, phase: str, pids: dict[str, int]) -> Iterator[None]:
    """py-spy on each Python process of ours while the block runs, if ``--profile`` asks for
    this phase (the paced one, or the wide one when it is the only CPU phase)."""
    wanted = "paced" if "paced" in args.phases else "wide"
    if not args.profile or phase != wanted:
        yield
        return
    folder = Path(args.profile)
    folder.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                # Not stopping the process for each sample: that stop costs the process
                # system time (ptrace), which would show as CPU per event.
                "--nonblocking",
                # Samples of the thread holding the GIL only: Python's CPU, not its waits.
                "--gil",
                "--format",
                "raw",
                "--output",
                str(folder / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
        if not name.startswith("broker")
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            spy.wait(30)


async def paced(bus: KafkaBus, streams: list[str], rate: int, seconds: float) -> int:
    """Publish ``rate`` events/s for each tenant of ``streams`` for ``seconds``."""
    interval = 1.0 / rate
    total = int(rate * seconds)
    t0 = time.monotonic()
    for index in range(total):
        delay = t0 + index * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await bus.publish_many([make_events(1, t, start=index)[0] for t in streams])
    return total


async def latencies(
    http: aiohttp.ClientSession, bus: KafkaBus, receivers: Receivers, args: argparse.Namespace
) -> tuple[list[float], list[float], int]:
    """ms from the event's timestamp to its POST: alone, then beside a hanging endpoint."""
    await receivers.reset(http)
    total = await paced(bus, ["ten_lat"], args.rate, args.seconds)
    alone = await receivers.wait_for(http, total, within=120)
    await receivers.reset(http)
    # The hanging endpoint's POSTs are never counted (they never end).
    total = await paced(bus, ["ten_lat2", "ten_hang"], args.rate, args.seconds)
    beside = await receivers.wait_for(http, total, within=120)
    ms = [1000 * v for v in alone["latencies"].get("/lat", [])]
    ms_beside = [1000 * v for v in beside["latencies"].get("/lat2", [])]
    return ms, ms_beside, total


async def warm_up(http: aiohttp.ClientSession, bus: KafkaBus, receivers: Receivers) -> None:
    """Until the router has every webhook and every process its connections."""
    warm = make_events(TENANTS * len(TYPES))
    for _ in range(100):
        await receivers.reset(http)
        await bus.publish_many(warm)
        got = await receivers.wait_for(http, len(warm), 5)
        if got["count"] >= len(warm):
            break
    await bus.publish_many(make_events(20, "ten_single") + make_events(20, "ten_lat"))
    await asyncio.sleep(3)


async def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each process (and worker thread) with no traffic at all."""
    before = cpu_snapshot(pids)
    await asyncio.sleep(seconds)
    after = cpu_snapshot(pids)
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}


@dataclass
class Results:
    idle: dict[str, float] | None = None
    wide: Throughput | None = None
    paced: Throughput | None = None
    single: Throughput | None = None
    alone: list[float] | None = None
    beside: list[float] | None = None
    total: int = 0


async def measure(
    stack: LocalStack, receivers: Receivers, args: argparse.Namespace, token: str
) -> None:
    gateway = f"http://127.0.0.1:{stack.ports.gateway}"
    pids = our_processes(stack)
    results = Results()
    async with aiohttp.ClientSession() as http:
        await receivers.ready(http)
        await register_webhooks(http, gateway, token, receivers)
        bus = KafkaBus(stack.settings)
        try:
            await warm_up(http, bus, receivers)
            if "idle" in args.phases:
                results.idle = await idle_cpu(pids, args.seconds)
            if "wide" in args.phases:
                events = make_events(args.events)
                urls = [
                    hook_url(
                        receivers, i % TENANTS, TYPES.index(EventType(e.type)) % HOOKS_PER_TENANT
                    )
                    for i, e in enumerate(events)
                ]
                results.wide = await throughput(
                    http, bus, receivers, pids, events, urls, args, "wide"
                )
            if "paced" in args.phases:
                results.paced = await paced_cpu(http, bus, receivers, pids, args)
            if "single" in args.phases:
                singles = make_events(args.events, "ten_single")
                single_url = f"{receivers.endpoints[TENANTS * HOOKS_PER_TENANT]}/single"
                results.single = await throughput(
                    http, bus, receivers, pids, singles, [single_url] * len(singles), args, "single"
                )
            if "latency" in args.phases:
                results.alone, results.beside, results.total = await latencies(
                    http, bus, receivers, args
                )
        finally:
            await bus.close()
    report(args, pids, results)


def report_cpu(name: str, phase: Throughput, pids: dict[str, int]) -> None:
    print(f"{name}: {phase.events} events")
    print(f"  pipeline throughput      {phase.rate:8.0f} events/s")
    if phase.ceiling == phase.ceiling:  # not NaN: a ceiling was measured
        print(f"  ceiling (bare aiohttp)   {phase.ceiling:8.0f} posts/s")
        ratio = 100 * phase.rate / phase.ceiling
        print(f"  pipeline / ceiling       {ratio:8.0f} %   (target >= 50 %)")
    print("  CPU per delivered event (from /proc over the phase):")
    for process in pids:
        print(f"    {process:<14} {1e6 * phase.cpu[process] / phase.events:6.0f} us")
        threads = sorted(
            ((name, cpu) for name, cpu in phase.cpu.items() if name.startswith(f"{process}/")),
            key=lambda item: -item[1],
        )
        for name, cpu in threads:
            if cpu * 1e6 / phase.events >= 1:
                thread = name.split("/", 1)[1]
                print(f"      {thread:<20} {1e6 * cpu / phase.events:6.0f} us")
    cpu_total = 1e6 * sum(phase.cpu[process] for process in pids) / phase.events
    print(f"    {'total':<14} {cpu_total:6.0f} us   (target <= 250 us)")


def report(args: argparse.Namespace, pids: dict[str, int], results: Results) -> None:
    print(f"machine: {os.cpu_count()} cores; Kafka, 4 services, 2 receiver processes, publisher")
    if results.idle is not None:
        print(f"idle for {args.seconds}s: CPU ms per second (target 0 outside the data path)")
        for name, share in results.idle.items():
            if name in pids or share >= 0.0005:
                print(f"  {name:<28} {1000 * share:6.1f}")
    wide_name = f"{TENANTS * HOOKS_PER_TENANT} webhooks / {TENANTS} tenants / 2 receivers"
    for name, phase in (
        (wide_name, results.wide),
        (f"{wide_name}, paced at {args.paced_rate}/s for {args.seconds}s", results.paced),
        ("one endpoint", results.single),
    ):
        if phase is not None:
            report_cpu(name, phase, pids)
    alone, beside, total = results.alone, results.beside, results.total
    if alone is None or beside is None:
        return
    print(
        f"latency at {args.rate}/s for {args.seconds}s, ms (event timestamp -> POST received; "
        f"n={len(alone)} of {total}): p50 {percentile(alone, 0.5):.1f}, p99 "
        f"{percentile(alone, 0.99):.1f}, max {max(alone, default=float('nan')):.1f}   "
        f"(targets p50 <= 10, p99 <= 25)"
    )
    print(
        f"beside an endpoint that never answers (another {args.rate}/s; n={len(beside)} of "
        f"{total}): p50 {percentile(beside, 0.5):.1f}, p99 {percentile(beside, 0.99):.1f}; "
        f"p99 x{percentile(beside, 0.99) / percentile(alone, 0.99):.2f}   (target <= 1.5)"
    )
    if alone:
        print(f"  mean alone {statistics.fmean(alone):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000, help="events per throughput phase")
    parser.add_argument("--rate", type=int, default=200, help="events/s of the latency phases")
    parser.add_argument(
        "--seconds", type=float, default=10, help="length of a latency phase and the paced one"
    )
    parser.add_argument(
        "--paced-rate", type=int, default=500, help="events/s of the paced CPU phase"
    )
    parser.add_argument(
        "--phases",
        type=lambda text: set(text.split(",")),
        default={"idle", "wide", "paced", "single", "latency"},
        help="comma-separated: idle, wide, paced, single, latency (default: all)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy each Python process during the paced phase"
    )
    args = parser.parse_args()

    base = Settings()
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={"topic_prefix": f"e2e{run}.", "registry_topic": f"_schemas_e2e{run}"}
    )
    token = f"bench_{run}"
    extra_env = throwaway_environment(token)
    # 50 webhooks' endpoints, the single one's and the latency probes'.
    receivers = Receivers.start(TENANTS * HOOKS_PER_TENANT + 2)
    try:
        with tempfile.TemporaryDirectory(prefix="cpevents-e2e-") as logs:
            stack = LocalStack(
                settings, platform_services, StackPorts.free(), Path(logs), extra_env,
                ephemeral_kafka=True,
            )  # fmt: skip
            progress = lambda message: print(f"  {message}", file=sys.stderr)  # noqa: E731
            with stack.running(on_progress=progress):
                asyncio.run(measure(stack, receivers, args, token))
    finally:
        receivers.stop()


if __name__ == "__main__":
    main()
