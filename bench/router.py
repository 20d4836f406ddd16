"""Router throughput: routed events/s and CPU per event of one streams worker, against
ceilings from the same run.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/router.py [--events 30000]
    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/router.py --observability
    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/router.py --py-spy /tmp/w.txt

Without CPEVENTS_BOOTSTRAP_SERVERS it starts a throwaway broker (as the test suite does).

Writes N events (one matching webhook each) to fresh topics, then measures over the same records:
1. ceiling: a bare confluent-kafka consume→produce loop copying the raw records;
2. the router's own work (decode, match, build + encode the task) in that same bare loop;
3. the Faust worker (``cpevents worker streams``): events/s from its first task to its last
   (Kafka timestamps of the tasks, so start-up is excluded) and its CPU time per event (user +
   system of the worker process, every thread, from ``/proc/<pid>/stat``, over the events it
   routed between two readings of ``/router/stats/``, so start-up is excluded too).
``--observability`` runs the worker phase in three modes alternated over rounds (metrics off,
metrics on, metrics and tracing to a local OTLP sink at a 100 % sampler; the consumer group is
deleted between runs so each one routes the same backlog) and prints the median of each mode
and the cost of metrics and of tracing against their targets (issue 16).
``--mode off|metrics|tracing`` sets the worker's observability otherwise (default metrics).
``--py-spy FILE`` records the worker over its measured phase (py-spy, collapsed stacks in FILE)
and prints the functions with the most samples, own and inclusive.
Without CPEVENTS_SCHEMA_REGISTRY_URL the run starts our registry in-process (on a topic of its
own), which the worker process shares.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path; the project root must.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import contextlib
import cProfile
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.clients import admin_config, consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from registry.server import RegistryThread
from schemas.event import Event
from schemas.event_types import EventType
from streams.app import app_id
from streams.fanout import Router
from streams.matching import WebhookIndex
from tests.fixtures_streams import WorkerProcess, make_webhook, produce, put_webhooks

TARGET = 12_000.0
METRICS_TARGET = 0.03
TRACING_TARGET = 0.15
TYPES = list(EventType)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MODES = ("off", "metrics", "tracing")


@dataclass(frozen=True)
class WorkerRun:
    """One worker phase: events/s (Kafka timestamps) and CPU µs per routed event."""

    rate: float
    cpu_us: float


def bare_loop(settings: Settings, work: Router | None, count: int, out_topic: str) -> float:
    """events/s of consume→(route)→produce with confluent-kafka, acknowledged at the end."""
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe(settings.topics.all_events)
    producer = Producer(producer_config(settings, **{"linger.ms": 2, "batch.size": 1_000_000}))
    seen = 0
    started: float | None = None
    while seen < count:
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error():
                continue
            if started is None:
                started = time.perf_counter()
            seen += 1
            if work is None:
                producer.produce(out_topic, key=message.key(), value=message.value())
            else:
                for task in work.route(message.topic() or "", message.value()).tasks:
                    producer.produce(out_topic, key=task.key, value=task.value)
            producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return count / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def tail_consumer(settings: Settings) -> Consumer:
    """A consumer of the deliveries topic positioned at its current end (earlier runs' tasks
    are not this run's)."""
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex}"))
    topic = settings.topics.deliveries
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    ends = [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
        for p in partitions
    ]
    consumer.assign(ends)
    return consumer


@contextlib.contextmanager
def py_spy(pid: int, output: str | None) -> Iterator[None]:
    """py-spy recording ``pid`` (collapsed stacks into ``output``) while the block runs."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", output]
    recorder = subprocess.Popen(
        [*command, "--nonblocking", "--rate", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)


def routed(worker: WorkerProcess) -> int:
    stats = worker.stats()
    return int(stats["routed_events"]) if stats else -1


def worker_run(
    settings: Settings, env: dict[str, str], count: int, spy: str | None = None
) -> WorkerRun:
    """Run a streams worker over the backlog of ``count`` events; see :class:`WorkerRun`."""
    consumer = tail_consumer(settings)
    worker = WorkerProcess(env, settings, session_timeout=30.0)
    first = last = None
    seen = 0
    deadline = time.monotonic() + 300
    try:
        # The CPU window opens once routing started (start-up excluded) and closes with the
        # last task read back; its events are the worker's own count over the same window.
        while routed(worker) <= 0:
            if time.monotonic() > deadline:
                raise SystemExit("the worker routed nothing")
            time.sleep(0.05)
        cpu_start, routed_start = cpu_seconds(worker.process.pid), routed(worker)
        with py_spy(worker.process.pid, spy):
            while seen < count and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=5000, timeout=1.0):
                    if message.error():
                        continue
                    _, stamp = message.timestamp()
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
                    seen += 1
            cpu_end = cpu_seconds(worker.process.pid)
        routed_end = routed(worker)
    finally:
        worker.stop()
        consumer.close()
    if seen < count or first is None or last is None:
        raise SystemExit(f"worker routed {seen}/{count} events")
    cpu_us = (cpu_end - cpu_start) / max(routed_end - routed_start, 1) * 1e6
    return WorkerRun(count / max((last - first) / 1000, 1e-3), cpu_us)


def forget_progress(settings: Settings, timeout: float = 60.0) -> None:
    """Delete the streams consumer group, so the next worker routes the backlog again."""
    admin = AdminClient(admin_config(settings))
    group = app_id(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.delete_consumer_groups([group], request_timeout=10)[group].result()
            return
        except KafkaException as exc:
            # GROUP_NOT_EMPTY until the stopped worker's membership is gone.
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot delete consumer group {group}: {exc}") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--profile", action="store_true", help="print where the routing time goes, even if fast"
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="the worker phase with metrics off, on, and tracing to a local OTLP sink",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --observability")
    parser.add_argument(
        "--mode", choices=MODES, default="metrics", help="the worker's observability otherwise"
    )
    parser.add_argument("--py-spy", dest="spy", help="record the worker with py-spy into FILE")
    args = parser.parse_args()
    os.environ["CPEVENTS_TOPIC_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}."
    with contextlib.ExitStack() as stack:
        # CPEVENTS_BOOTSTRAP_SERVERS if set, else a throwaway broker (Docker or a local JVM).
        os.environ["CPEVENTS_BOOTSTRAP_SERVERS"] = stack.enter_context(kafka_cluster(Settings()))
        if "CPEVENTS_SCHEMA_REGISTRY_URL" not in os.environ:
            registry = stack.enter_context(
                RegistryThread(Settings(registry_topic=f"_schemas.bench.{uuid.uuid4().hex[:8]}"))
            )
            os.environ["CPEVENTS_SCHEMA_REGISTRY_URL"] = registry.url
        settings, router, records = prepare(args.events)
        if args.observability:
            observability(settings, args.events, args.rounds)
        else:
            run(settings, router, records, args)


def prepare(count: int) -> tuple[Settings, Router, list[tuple[str, bytes | None, bytes | None]]]:
    """Write ``count`` events (and the webhooks they match) to fresh topics."""
    settings = Settings()
    ensure_topics(settings)
    serde = serde_for(settings)
    tenants = [f"ten_{i}" for i in range(12)]
    hooks = [make_webhook(t) for t in tenants]
    put_webhooks(settings, serde, *hooks)
    events = [
        Event.new(TYPES[i % len(TYPES)], tenants[i % len(tenants)]).with_payload({"i": i})
        for i in range(count)
    ]
    records: list[tuple[str, bytes | None, bytes | None]] = []
    for event in events:
        topic = settings.topics.for_event_type(event.type)
        records.append((topic, event.tenant_id.encode(), serde.events.encode(event, topic)))
    # Each event in a trace of its own, as a traced gateway or KafkaBus publishes it: with tracing
    # on, the router's batch spans link to as many contexts as they keep.
    traceparents = [
        [("traceparent", f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode())]
        for _ in records
    ]
    produce(settings, records, timeout=120, headers=traceparents)
    size = sum(len(r[2] or b"") for r in records) / len(records)
    print(f"{count} events of {size:.0f} bytes on {len(settings.topics.all_events)} topics")
    return settings, Router(serde, WebhookIndex(hooks), settings.topics.deliveries), records


def worker_env(settings: Settings, mode: str = "metrics", endpoint: str = "") -> dict[str, str]:
    """The worker's environment for an observability ``mode`` (see ``--observability``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["CPEVENTS_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers or ""
    env["CPEVENTS_METRICS_ENABLED"] = "false" if mode == "off" else "true"
    if mode == "tracing":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        env["OTEL_TRACES_SAMPLER"] = "always_on"
    return env


def run(
    settings: Settings,
    router: Router,
    records: list[tuple[str, bytes | None, bytes | None]],
    args: argparse.Namespace,
) -> None:
    """Measure the ceiling, the routing work and the worker (in observability ``args.mode``)."""
    count = len(records)
    scratch = settings.topics.deliveries_dlt  # any topic of this run that nothing reads
    ceiling = bare_loop(settings, None, count, scratch)
    print(f"ceiling   bare confluent consume→produce:        {ceiling:9,.0f} events/s")
    logic = bare_loop(settings, router, count, scratch)
    print(f"          routing work in the bare loop:         {logic:9,.0f} events/s")
    with contextlib.ExitStack() as stack:
        endpoint = ""
        if args.mode == "tracing":
            from bench.otlp_sink import OtlpSink

            endpoint = stack.enter_context(OtlpSink()).endpoint
        env = worker_env(settings, args.mode, endpoint)
        worker = worker_run(settings, env, count, args.spy)
    print(
        f"router    streams worker (Faust, raw batches):   {worker.rate:9,.0f} events/s"
        f"   {worker.cpu_us:6.1f} µs CPU/event (worker process)"
    )
    print(
        f"ratio     router / bare ceiling = {worker.rate / ceiling:.2f}; "
        f"router / routing-work loop = {worker.rate / logic:.2f}; target {TARGET:,.0f}/s: "
        f"{'met' if worker.rate >= TARGET else 'NOT met'}"
    )
    if args.spy:
        print_spy(args.spy)
    if args.profile or worker.rate < TARGET:
        profile_routing(router, records[: min(len(records), 5000)])


def observability(settings: Settings, count: int, rounds: int) -> None:
    """The worker phase per mode, alternated over ``rounds``; medians and costs (issue 16)."""
    from bench.otlp_sink import OtlpSink

    runs: dict[str, list[WorkerRun]] = {mode: [] for mode in MODES}
    with OtlpSink() as sink:
        for round_number in range(1, rounds + 1):
            for mode in MODES:
                spans_before = sink.spans()
                result = worker_run(settings, worker_env(settings, mode, sink.endpoint), count)
                forget_progress(settings)
                runs[mode].append(result)
                spans = f", {sink.spans() - spans_before} spans" if mode == "tracing" else ""
                print(
                    f"round {round_number} {mode:8} {result.rate:9,.0f} events/s"
                    f" {result.cpu_us:6.1f} µs CPU/event{spans}"
                )
        spans_total = sink.spans()
    rate = {mode: statistics.median(r.rate for r in runs[mode]) for mode in MODES}
    cpu = {mode: statistics.median(r.cpu_us for r in runs[mode]) for mode in MODES}
    for mode in MODES:
        print(f"median    {mode:8} {rate[mode]:9,.0f} events/s {cpu[mode]:6.1f} µs CPU/event")
    print(f"spans received by the OTLP sink: {spans_total} (of {rounds * count} events traced)")
    for mode, target in (("metrics", METRICS_TARGET), ("tracing", TRACING_TARGET)):
        cost = 1 - rate[mode] / rate["off"]
        cpu_cost = cpu[mode] / cpu["off"] - 1
        verdict = "met" if cost <= target else "NOT met"
        print(
            f"cost of {mode:8} {cost:6.1%} of throughput (target ≤ {target:.0%}: {verdict}); "
            f"{cpu_cost:+6.1%} CPU per event"
        )


def print_spy(path: str, top: int = 25) -> None:
    """The functions with the most py-spy samples in ``path``, own and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")[1:]  # the first is the thread's name
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"\npy-spy: {total} samples of the worker (every thread, idle included)")
    for title, table in (("own", own), ("inclusive", inclusive)):
        print(f"-- by {title} samples")
        for frame, n in table.most_common(top):
            print(f"{n / max(total, 1):6.1%}  {frame}")


def profile_routing(router: Router, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Where the router's per-event CPU time goes (no Kafka: decode, match, encode)."""
    started = time.perf_counter()
    for topic, _key, value in records:
        router.route(topic, value)
    per_event_us = (time.perf_counter() - started) / len(records) * 1e6
    print(f"\nrouting work alone: {per_event_us:.0f} µs/event (no Kafka); profile by own time:")
    profiler = cProfile.Profile()
    profiler.enable()
    for topic, _key, value in records:
        router.route(topic, value)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
