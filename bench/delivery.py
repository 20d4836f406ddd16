"""Delivery worker throughput against its ceiling, and retry lateness.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/delivery.py [--tasks 10000]

Without CPEVENTS_BOOTSTRAP_SERVERS it starts a throwaway broker. A receiver runs in its own
process on a free 127.0.0.1 port. The ceiling is a bare aiohttp client, in a process of its own,
posting the same bodies with the same headers and concurrency to the same receiver. Rounds
alternate the ceiling and the worker (which runs in this process, warmed up, throughout); the
median round counts. Then a healthy endpoint's latency under a paced load, alone and beside an
endpoint (another address) that never answers. Targets: worker >= 75 % of the ceiling; retry
lateness p99 <= 500 ms; beside a hanging endpoint, healthy p99 within 1.5x.
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
import signal
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
from yarl import URL

from cpevents.localkafka.broker import free_port
from cpevents.localkafka.resolve import kafka_cluster
from delivery.schema_setup import register_schemas
from delivery.sender import USER_AGENT
from delivery.signing import signature_headers
from delivery.worker import DeliveryWorker
from plumbing.kafka.clients import admin_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas import ids
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.secrets import SecretBox, generate_encryption_key, generate_secret
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import EncryptedSecret, Webhook

CONCURRENCY = 64
WARM_UP = 500
# Latency of a healthy endpoint alone, then beside a hanging one (tasks/s, seconds).
LATENCY_RATE = 200
HANGING_RATE = LATENCY_RATE  # its backlog (rate x timeout) is twice the in-flight budget
LATENCY_SECONDS = 4.0
HANG_TIMEOUT = 5.0  # the worker's attempt timeout here: hanging attempts end within the run
HANGING_HOST = "127.0.0.2"


def run_receiver(port: int) -> None:
    """Count POSTs per path. /flaky answers 500 to an event's first attempt, 200 after; /hang
    never answers; /flaky and /lat* keep each event's arrival times."""
    times: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, list[float]] = {}
    closing = asyncio.Event()  # set on SIGTERM: hanging requests end, so the server can stop

    async def post(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        path = request.path
        counts.setdefault(path, []).append(now)
        if path == "/hang":
            await closing.wait()
            return web.Response(status=503)
        if path == "/flaky" or path.startswith("/lat"):
            seen = times.setdefault(path, {}).setdefault(request.headers["webhook-id"], [])
            seen.append(now)
            if len(seen) == 1 and path == "/flaky":
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
                "times": times.get(path, {}),
                "cpu": time.process_time(),
            }
        )

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", post)
    # Two addresses: an endpoint is a scheme, host and port, and the hanging one must be another
    # endpoint than the healthy ones (its own lane), as another tenant's server would be.
    asyncio.run(serve_until_terminated(app, [("127.0.0.1", port), (HANGING_HOST, port)], closing))


async def serve_until_terminated(
    app: web.Application, addresses: list[tuple[str, int]], closing: asyncio.Event
) -> None:
    """Serve ``app`` until SIGTERM, then end the requests still open (``closing``) and stop.

    Not ``web.run_app``: its SIGTERM handling cancels whatever runs, hanging requests
    included, and prints a traceback for each."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    for host, port in addresses:
        await web.TCPSite(runner, host, port).start()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, closing.set)
    await closing.wait()
    await runner.cleanup()


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


async def bare_posts(base: str, path: str, requests: list[tuple[bytes, dict[str, str]]]) -> None:
    """Bare aiohttp posts of the same bodies and headers with the same concurrency."""
    queue = list(requests)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:

        async def post_all() -> None:
            while queue:
                body, headers = queue.pop()
                async with s.post(f"{base}{path}", data=body, headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(post_all() for _ in range(CONCURRENCY)))


def run_ceiling(
    base: str,
    path: str,
    requests: list[tuple[bytes, dict[str, str]]],
    ready: Any,
    go: Any,
    cpu: Any,
) -> None:
    """The ceiling's own process (so the idle worker's loop does not share its core): once
    started up, says ``ready``, waits for ``go``, posts ``requests``, reports its CPU seconds."""
    ready.set()
    go.wait()
    started = time.process_time()
    asyncio.run(bare_posts(base, path, requests))
    cpu.value = time.process_time() - started


async def ceiling(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    requests: list[tuple[bytes, dict[str, str]]],
    phase: Phase,
) -> float:
    """The bare client's deliveries/s, timed like the worker: from the first to the last POST
    the receiver saw, so neither side is charged for starting up."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process running Kafka clients
    ready, go, cpu = spawn.Event(), spawn.Event(), spawn.Value("d", 0.0)
    client = spawn.Process(target=run_ceiling, args=(base, path, requests, ready, go, cpu))
    client.start()
    loop = asyncio.get_running_loop()
    # The client's interpreter start-up stays out of the phase's figures.
    if not await loop.run_in_executor(None, ready.wait, 60):
        client.kill()
        raise RuntimeError("the ceiling's process did not start")
    async with measured(session, base, phase):
        go.set()
        await loop.run_in_executor(None, client.join)
    if client.exitcode != 0:
        raise RuntimeError(f"the ceiling's process failed (exit code {client.exitcode})")
    phase.cpu = phase.loop_cpu = cpu.value  # the bare client is all event loop
    stats = await receiver_stats(session, base, path)
    count, first, last = float(stats["count"]), float(stats["first"]), float(stats["last"])
    return count / max(last - first, 1e-9)


def new_traceparent() -> str:
    """A sampled W3C trace context of a new trace."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    loop_cpu: float = 0.0
    receiver_cpu: float = 0.0
    machine_cpu: float = 0.0

    def report(self, name: str, deliveries: int) -> str:
        return (
            f"{name:<8} cpu/delivery {1e6 * self.cpu / deliveries:6.0f} us "
            f"(event loop {1e6 * self.loop_cpu / deliveries:4.0f})   "
            f"receiver busy {100 * self.receiver_cpu / self.wall:4.0f} % of one core   "
            f"machine busy {self.machine_cpu / self.wall:4.1f} of {os.cpu_count()} cores"
        )


@contextlib.asynccontextmanager
async def measured(session: aiohttp.ClientSession, base: str, phase: Phase) -> AsyncIterator[None]:
    receiver_cpu = (await receiver_stats(session, base, "/"))["cpu"]
    wall, cpu, machine = time.perf_counter(), time.process_time(), machine_cpu()
    loop_cpu = time.thread_time()  # the event loop's thread: the worker's bottleneck
    yield
    phase.wall = time.perf_counter() - wall
    phase.cpu = time.process_time() - cpu
    phase.loop_cpu = time.thread_time() - loop_cpu
    phase.machine_cpu = machine_cpu() - machine
    phase.receiver_cpu = (await receiver_stats(session, base, "/"))["cpu"] - receiver_cpu


async def latencies(
    session: aiohttp.ClientSession,
    base: str,
    paced: Any,
    healthy: Webhook,
    hanging: Webhook | None,
) -> list[float]:
    """Milliseconds from producing a task for ``healthy`` to its POST arriving, under the paced
    load, with ``hanging`` getting its own share meanwhile."""
    path = URL(healthy.url).path
    streams = [(healthy, LATENCY_RATE)] + ([(hanging, HANGING_RATE)] if hanging else [])
    sent = await paced(streams, LATENCY_SECONDS)
    count = int(LATENCY_RATE * LATENCY_SECONDS)
    stats = await wait_count(session, base, path, count, within=60)
    arrived = stats["times"]
    return [(arrived[event][0] - at) * 1000 for event, at in sent.items() if event in arrived]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(bootstrap: str, tasks: int, rounds: int, retries: int, profile: str | None) -> None:
    settings = bench_settings(
        bootstrap, schema_registry_url=f"mock://{uuid.uuid4().hex}", delivery_jitter=0.1
    )
    ensure_topics(settings)
    try:
        await measure(settings, tasks, rounds, retries, profile)
    finally:
        # The cluster may be shared: leave no bench topics behind.
        names = [spec.name for spec in settings.topics.specs(settings.partitions)]
        admin = AdminClient(admin_config(settings))  # kept alive until every future resolves
        for future in admin.delete_topics(names).values():
            future.result(timeout=30)


@dataclass
class Fixture:
    """What every phase shares: the settings, a producer of tasks and webhooks, the receiver's
    address and the one signing secret every bench webhook has."""

    settings: Settings
    serde: Serde
    producer: Producer
    port: int
    secret: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def webhook(self, path: str, host: str = "127.0.0.1") -> Webhook:
        assert self.settings.secret_key is not None
        box = SecretBox(self.settings.secret_key.get_secret_value())
        hook = Webhook(
            id=ids.new_id(ids.WEBHOOK),
            tenant_id="ten_bench",
            url=f"http://{host}:{self.port}{path}",
            secrets=(EncryptedSecret(box.encrypt(self.secret), utc_now()),),
        )
        topic = self.settings.topics.webhooks
        self.producer.produce(topic, key=hook.id, value=self.serde.webhooks.encode(hook, topic))
        return hook

    def prepare_tasks(self, hook: Webhook, count: int) -> list[tuple[bytes, bytes, DeliveryTask]]:
        made = []
        topic = self.settings.topics.deliveries
        for n in range(count):
            event = Event.new("instance.created", "ten_bench").with_payload(
                {"n": n, "pad": "x" * 64}
            )
            task = DeliveryTask.for_event(event, hook.id, hook.url)
            # Spread one webhook's tasks over every partition, as many tenants' would be.
            made.append((str(n).encode(), self.serde.tasks.encode(task, topic), task))
        return made

    def send_tasks(
        self, prepared: list[tuple[bytes, bytes, DeliveryTask]], traced: bool = False
    ) -> None:
        """Produce ``prepared``; ``traced``: each with a ``traceparent`` header of its own, as
        the router writes them when tracing is on."""
        topic = self.settings.topics.deliveries
        for key, value, _task in prepared:
            headers = [("traceparent", new_traceparent())] if traced else None
            self.producer.produce(topic, key=key, value=value, headers=headers)
            self.producer.poll(0)
        self.producer.flush(60)

    def produce_tasks(self, hook: Webhook, count: int) -> list[DeliveryTask]:
        prepared = self.prepare_tasks(hook, count)
        self.send_tasks(prepared)
        return [task for _key, _value, task in prepared]

    async def paced(self, streams: list[tuple[Webhook, int]], seconds: float) -> dict[str, float]:
        """Produce each webhook's tasks at its rate (tasks/s) for ``seconds``; the time each
        event's task was produced, by event id."""
        topic = self.settings.topics.deliveries
        batches = [(self.prepare_tasks(hook, int(rate * seconds)), rate) for hook, rate in streams]
        sent: dict[str, float] = {}
        started = time.perf_counter()
        done = [0] * len(batches)
        while any(n < len(batch) for n, (batch, _rate) in zip(done, batches, strict=True)):
            elapsed = time.perf_counter() - started
            for i, (batch, rate) in enumerate(batches):
                while done[i] < min(len(batch), int(elapsed * rate) + 1):
                    key, value, task = batch[done[i]]
                    self.producer.produce(topic, key=key, value=value)
                    sent[task.event.id] = time.time()
                    done[i] += 1
            self.producer.poll(0)
            await asyncio.sleep(0.002)
        self.producer.flush(10)
        return sent

    def ceiling_requests(
        self, batch: list[tuple[bytes, bytes, DeliveryTask]]
    ) -> list[tuple[bytes, dict[str, str]]]:
        """What the worker sends for ``batch``: the same bodies with the same headers."""
        requests = []
        for _key, _value, task in batch:
            body = task.event.to_json().encode()
            headers = signature_headers(task.event.id, int(time.time()), body, [self.secret])
            requests.append(
                (body, {"content-type": "application/json", "user-agent": USER_AGENT, **headers})
            )
        return requests


Round = tuple[float, float, Phase, Phase]


async def throughput_rounds(
    fx: Fixture,
    session: aiohttp.ClientSession,
    batches: list[list[tuple[bytes, bytes, DeliveryTask]]],
    profiler: cProfile.Profile | None,
) -> list[Round]:
    """Rounds alternate the ceiling and the worker, so a slow spell of the shared machine
    weighs on both figures of a round; the median round is the result."""
    requests = fx.ceiling_requests(batches[0])
    results: list[Round] = []
    for n, batch in enumerate(batches):
        bare_phase, worker_phase = Phase(), Phase()
        bare_rate = await ceiling(session, fx.base, f"/bare{n}", requests, bare_phase)
        # Produced before the measured phase (the loop is blocked meanwhile, so the worker
        # has not started on them): producing is this script's CPU, not the worker's.
        fx.send_tasks(batch)
        async with measured(session, fx.base, worker_phase):
            if profiler is not None:
                profiler.enable()
            stats = await wait_count(session, fx.base, f"/ok{n}", len(batch), poll=0.05)
            if profiler is not None:
                profiler.disable()
        worker_rate = stats["count"] / max(stats["last"] - stats["first"], 1e-9)
        results.append((worker_rate, bare_rate, worker_phase, bare_phase))
    return results


async def retry_lateness(
    fx: Fixture, session: aiohttp.ClientSession, retries: int
) -> tuple[int, list[float]]:
    """How late past its due time each task's second attempt came (ms), for tasks whose
    endpoint fails their first attempt."""
    flaky = fx.webhook("/flaky")
    retried = fx.produce_tasks(flaky, retries)
    stats = await wait_count(session, fx.base, "/flaky", 2 * retries)
    lateness = []
    delay = 0.5
    for attempts in stats["times"].values():
        if len(attempts) >= 2:
            # The first retry tier is 500 ms with up to 10 % jitter: due in [0.5, 0.55] s.
            lateness.append((attempts[1] - attempts[0] - delay) * 1000)
    return len(retried), lateness


async def wait_for_receiver(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(100):
        try:
            await receiver_stats(session, base, "/ok")
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)


async def measure(
    settings: Settings, tasks: int, rounds: int, retries: int, profile: str | None
) -> None:
    serde = serde_for(settings)
    register_schemas(serde, settings.topics)
    port = free_port()
    receiver = multiprocessing.Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    fx = Fixture(settings, serde, Producer(producer_config(settings)), port, generate_secret())
    session = aiohttp.ClientSession()
    await wait_for_receiver(session, fx.base)

    # The measured tasks are encoded now but produced only once the worker has delivered a
    # warm-up batch: start-up and the consumer group join stay out of the figures, which
    # describe the worker in its steady state. Each round has its own webhook (and path).
    fx.produce_tasks(fx.webhook("/warm"), WARM_UP)
    batches = [fx.prepare_tasks(fx.webhook(f"/ok{n}"), tasks) for n in range(rounds)]
    # Written now, so the worker has long read them when their phase comes.
    latency_hooks = fx.webhook("/lat0"), fx.webhook("/lat1"), fx.webhook("/hang", HANGING_HOST)

    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde=serde).run(stop))
    await wait_count(session, fx.base, "/warm", WARM_UP)
    profiler = cProfile.Profile() if profile else None
    results = await throughput_rounds(fx, session, batches, profiler)
    retried, lateness = await retry_lateness(fx, session, retries)
    # A hanging endpoint must not slow a healthy one: the same paced load alone, then beside
    # an endpoint that never answers, whose queue the worker must defer to the retry tier
    # rather than let it take the in-flight budget (HANGING_RATE * HANG_TIMEOUT is twice it).
    alone = await latencies(session, fx.base, fx.paced, latency_hooks[0], None)
    beside = await latencies(session, fx.base, fx.paced, latency_hooks[1], latency_hooks[2])
    stop.set()
    await worker
    await session.close()
    receiver.terminate()
    receiver.join(10)

    print(json.dumps({"tasks": tasks, "rounds": rounds, "concurrency": CONCURRENCY}))
    print_rounds(results, tasks)
    print_latencies(retried, lateness, alone, beside)
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def print_rounds(results: list[Round], tasks: int) -> None:
    for n, (worker_rate, bare_rate, worker_phase, bare_phase) in enumerate(results):
        print(
            f"round {n + 1}: worker {worker_rate:6.0f}/s   ceiling (bare aiohttp) "
            f"{bare_rate:6.0f}/s   {100 * worker_rate / bare_rate:3.0f} %"
        )
        print("  " + worker_phase.report("worker", tasks))
        print("  " + bare_phase.report("bare", tasks))
    middle = sorted(results, key=lambda r: r[0] / r[1])[len(results) // 2]
    print(f"worker deliveries/s      {middle[0]:10.0f}   (median round)")
    print(f"ceiling (bare aiohttp)/s {middle[1]:10.0f}   (same round)")
    print(f"worker / ceiling         {100 * middle[0] / middle[1]:9.0f} %   (target >= 75 %)")


def print_latencies(
    retried: int, lateness: list[float], alone: list[float], beside: list[float]
) -> None:
    if lateness:
        print(
            f"retry lateness ms past the 500 ms tier (n={len(lateness)}, incl. <= 50 ms jitter): "
            f"p50 {statistics.median(lateness):.0f}, p99 {percentile(lateness, 0.99):.0f}, "
            f"min {min(lateness):.0f}   (target p99 <= 500)"
        )
    print(f"retried tasks: {retried}, with a second attempt: {len(lateness)}")
    print(
        f"healthy endpoint latency at {LATENCY_RATE}/s, ms (task produced -> POST received): "
        f"alone p50 {percentile(alone, 0.5):.1f}, p99 {percentile(alone, 0.99):.1f}; beside one "
        f"hanging at {HANGING_RATE}/s p50 {percentile(beside, 0.5):.1f}, "
        f"p99 {percentile(beside, 0.99):.1f}"
    )
    print(
        f"hanging endpoint: healthy p99 x{percentile(beside, 0.99) / percentile(alone, 0.99):.2f}"
        f"   (target <= 1.5)"
    )


# -- --observability: the cost of metrics and of tracing (issue 16) ------------------------------

MODES = ("off", "metrics", "tracing")


def mode_environment(mode: str, sink_endpoint: str) -> dict[str, str | None]:
    """The variables a worker of ``mode`` runs with (None: unset)."""
    env: dict[str, str | None] = {
        # Each cost on its own against both off: tracing runs without metrics.
        "CPEVENTS_METRICS_ENABLED": "true" if mode == "metrics" else "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": None,
        "OTEL_EXPORTER_OTLP_PROTOCOL": None,
        "OTEL_TRACES_SAMPLER": None,
        "OTEL_TRACES_EXPORTER": None,
    }
    if mode == "tracing":
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_TRACES_SAMPLER="always_on",
        )
    return env


def run_worker(settings: Settings, stop: Any) -> None:
    """A delivery worker in a process of its own (its metrics switch is read once per
    process), tracing if the environment says so, until ``stop`` is set."""
    from plumbing import tracing

    tracing.configure("cpevents-delivery")

    async def work() -> None:
        done = asyncio.Event()
        worker = asyncio.create_task(DeliveryWorker(settings).run(done))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        done.set()
        await worker

    asyncio.run(work())
    tracing.shutdown()  # exports what is pending


@dataclass
class ModeWorker:
    """One mode's worker process, its topics and its fixture."""

    mode: str
    fx: Fixture
    process: Any
    stop: Any


def start_mode_worker(
    mode: str, settings: Settings, port: int, secret: str, sink_endpoint: str
) -> ModeWorker:
    """``mode``'s own topics, registry and worker process (one consumer group per mode)."""
    own = settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}{mode}.",
            # In-process mock registries: the worker's, filled in the same order, gives the
            # same schema ids as this process's.
            "schema_registry_url": f"mock://{uuid.uuid4().hex}",
        }
    )
    ensure_topics(own)
    serde = serde_for(own)
    register_schemas(serde, own.topics)
    fx = Fixture(own, serde, Producer(producer_config(own)), port, secret)
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    process = spawn.Process(target=run_worker, args=(own, stop))
    saved = {name: os.environ.get(name) for name in mode_environment(mode, "")}
    try:
        for name, value in mode_environment(mode, sink_endpoint).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.start()  # a spawned child takes this environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return ModeWorker(mode, fx, process, stop)


ModeRound = tuple[str, float, float, float]  # mode, worker/s, ceiling/s, worker CPU s/delivery


async def observability_rounds(
    session: aiohttp.ClientSession, base: str, workers: list[ModeWorker], tasks: int, rounds: int
) -> list[ModeRound]:
    """off, metrics, tracing, off, metrics, tracing…: each worker's round against the bare
    ceiling measured just before it."""
    results: list[ModeRound] = []
    batches = {
        w.mode: [w.fx.prepare_tasks(w.fx.webhook(f"/{w.mode}{n}"), tasks) for n in range(rounds)]
        for w in workers
    }
    requests = workers[0].fx.ceiling_requests(batches[workers[0].mode][0])
    for n in range(rounds):
        for w in workers:
            bare_rate = await ceiling(session, base, f"/bare-{w.mode}{n}", requests, Phase())
            w.fx.send_tasks(batches[w.mode][n], traced=w.mode == "tracing")
            cpu = process_cpu(w.process.pid)
            stats = await wait_count(session, base, f"/{w.mode}{n}", tasks, poll=0.05)
            cpu = (process_cpu(w.process.pid) - cpu) / max(stats["count"], 1)
            rate = stats["count"] / max(stats["last"] - stats["first"], 1e-9)
            results.append((w.mode, rate, bare_rate, cpu))
            print(
                f"round {n + 1} {w.mode:<8} worker {rate:6.0f}/s   ceiling {bare_rate:6.0f}/s   "
                f"{100 * rate / bare_rate:3.0f} %   worker cpu/delivery {1e6 * cpu:4.0f} us",
                flush=True,
            )
    return results


def print_observability(results: list[ModeRound], spans: int, traced: int) -> None:
    ratios: dict[str, float] = {}
    for mode in MODES:
        rows = [r for r in results if r[0] == mode]
        middle = sorted(rows, key=lambda r: r[1] / r[2])[len(rows) // 2]
        ratios[mode] = middle[1] / middle[2]
        cpu = statistics.median(r[3] for r in rows)
        print(
            f"{mode:<8} deliveries/s {middle[1]:7.0f}   {100 * ratios[mode]:4.0f} % of its "
            f"ceiling (median round)   worker cpu/delivery {1e6 * cpu:4.0f} us (median)"
        )
    print(
        f"cost of metrics  {100 * (1 - ratios['metrics'] / ratios['off']):5.1f} %   (target <= 3 %)"
    )
    tracing_cost = 100 * (1 - ratios["tracing"] / ratios["off"])
    print(f"cost of tracing  {tracing_cost:5.1f} %   (target <= 15 %)")
    print(f"spans received by the OTLP sink: {spans} (traced deliveries: {traced})")


async def observability(settings: Settings, tasks: int, rounds: int) -> None:
    from bench.otlp_sink import OtlpSink

    port = free_port()
    receiver = multiprocessing.Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    secret = generate_secret()
    workers: list[ModeWorker] = []
    session = aiohttp.ClientSession()
    try:
        with OtlpSink() as sink:
            base = f"http://127.0.0.1:{port}"
            await wait_for_receiver(session, base)
            workers = [start_mode_worker(m, settings, port, secret, sink.endpoint) for m in MODES]
            for w in workers:  # start-up and the group join stay out of the figures
                w.fx.send_tasks(w.fx.prepare_tasks(w.fx.webhook(f"/warm-{w.mode}"), WARM_UP))
            for w in workers:
                await wait_count(session, base, f"/warm-{w.mode}", WARM_UP)
            results = await observability_rounds(session, base, workers, tasks, rounds)
            stop_workers(workers)
            traced = WARM_UP + tasks * rounds  # a warm-up attempt is a span (a root) too
            print(json.dumps({"tasks": tasks, "rounds": rounds, "concurrency": CONCURRENCY}))
            print_observability(results, sink.spans(), traced)
    finally:
        stop_workers(workers)
        await session.close()
        receiver.terminate()
        receiver.join(10)
        for w in workers:
            delete_topics(w.fx.settings)


def stop_workers(workers: list[ModeWorker]) -> None:
    for w in workers:
        w.stop.set()
    for w in workers:
        w.process.join(60)
        if w.process.exitcode is None:
            w.process.kill()
            w.process.join()


def delete_topics(settings: Settings) -> None:
    """The cluster may be shared: leave no bench topics behind."""
    names = [spec.name for spec in settings.topics.specs(settings.partitions)]
    admin = AdminClient(admin_config(settings))  # kept alive until every future resolves
    for future in admin.delete_topics(names).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def bench_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Fresh topics, quick retry tiers, loopback endpoints allowed, no breaker in the way."""
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        retry_tiers=("500ms", "1s"),
        secret_key=SecretStr(generate_encryption_key()),
        delivery_allowed_networks=("127.0.0.0/8",),
        delivery_per_endpoint_limit=CONCURRENCY,
        delivery_breaker_failures=100_000,
        delivery_timeout=HANG_TIMEOUT,
        **overrides,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--retries", type=int, default=300)
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the event loop while the worker delivers"
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="instead: throughput with metrics off, metrics on, and tracing to a local OTLP "
        "sink, alternated round by round (a worker process per mode)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.tasks < 1:
        parser.error("--rounds and --tasks must be at least 1")
    with kafka_cluster(
        Settings(bootstrap_servers=os.environ.get("CPEVENTS_BOOTSTRAP_SERVERS"))
    ) as servers:
        if args.observability:
            asyncio.run(observability(bench_settings(servers), args.tasks, args.rounds))
        else:
            asyncio.run(bench(servers, args.tasks, args.rounds, args.retries, args.profile))


if __name__ == "__main__":
    main()
