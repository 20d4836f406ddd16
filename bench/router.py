"""Router throughput: routed events/s of one streams worker, against ceilings from the same run.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/router.py [--events 30000]

Without CPEVENTS_BOOTSTRAP_SERVERS it starts a throwaway broker (as the test suite does).

Writes N events (one matching webhook each) to fresh topics, then measures over the same records:
1. ceiling: a bare confluent-kafka consume→produce loop copying the raw records;
2. the router's own work (decode, match, build + encode the task) in that same bare loop;
3. the Faust worker (``cpevents worker streams``), from its first task to its last (Kafka
   timestamps of the tasks, so start-up is excluded).
Without CPEVENTS_SCHEMA_REGISTRY_URL the run starts our registry in-process (on a topic of its
own), which the worker process shares.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from registry.server import RegistryThread
from schemas.event import Event
from schemas.event_types import EventType
from streams.fanout import Router
from streams.matching import WebhookIndex
from tests.fixtures_streams import WorkerProcess, make_webhook, produce, put_webhooks

TARGET = 10_000.0
TYPES = list(EventType)


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


def worker_rate(settings: Settings, env: dict[str, str], count: int) -> float:
    """events/s of a streams worker process, between its first and last task's timestamps."""
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe([settings.topics.deliveries])
    worker = WorkerProcess(env, settings, session_timeout=30.0)
    first = last = None
    seen = 0
    deadline = time.monotonic() + 300
    try:
        while seen < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                if message.error():
                    continue
                _, stamp = message.timestamp()
                first = stamp if first is None else min(first, stamp)
                last = stamp if last is None else max(last, stamp)
                seen += 1
            if seen == 0:
                worker.stats()  # fails if the worker died
    finally:
        worker.stop()
        consumer.close()
    if seen < count or first is None or last is None:
        raise SystemExit(f"worker routed {seen}/{count} events")
    return count / max((last - first) / 1000, 1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--profile", action="store_true", help="print where the routing time goes, even if fast"
    )
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
        run(args.events, args.profile)


def run(count: int, profile: bool) -> None:
    """Write ``count`` events, then measure the ceiling, the routing work and the worker."""
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
    produce(settings, records, timeout=120)
    size = sum(len(r[2] or b"") for r in records) / len(records)
    print(f"{count} events of {size:.0f} bytes on {len(settings.topics.all_events)} topics")

    scratch = settings.topics.deliveries_dlt  # any topic of this run that nothing reads
    ceiling = bare_loop(settings, None, count, scratch)
    print(f"ceiling   bare confluent consume→produce:        {ceiling:9,.0f} events/s")
    router = Router(serde, WebhookIndex(hooks), settings.topics.deliveries)
    logic = bare_loop(settings, router, count, scratch)
    print(f"          routing work in the bare loop:         {logic:9,.0f} events/s")
    env = {**os.environ, "CPEVENTS_BOOTSTRAP_SERVERS": settings.bootstrap_servers or ""}
    rate = worker_rate(settings, env, count)
    print(f"router    Faust worker (one task per event):     {rate:9,.0f} events/s")
    print(
        f"ratio     router / bare ceiling = {rate / ceiling:.2f}; "
        f"router / routing-work loop = {rate / logic:.2f}; target {TARGET:,.0f}/s: "
        f"{'met' if rate >= TARGET else 'NOT met'}"
    )
    if profile or rate < TARGET:
        profile_routing(router, records[: min(len(records), 5000)])


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
