"""Events/s through ``KafkaBus.publish_many`` batches vs a bare confluent-kafka producer of the
same bytes, in the same run (the ceiling). Target (issue 20): the bus reaches >= 90 % of it.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/produce.py \\
        [--events N] [--batch B] [--rounds R]

Without CPEVENTS_BOOTSTRAP_SERVERS a throwaway broker is started (as in the tests).

Both sides are warmed up first (producer id, metadata, the bus's schema id), then each round
runs the bare producer and the bus back to back on the same events, alternating which goes
first, so that a neighbour's load on a shared machine hits both alike. Each side's figure is
the median of its rounds; the ratio printed is the median of the per-round ratios. The bus
path encodes every event in every round (Avro, wire header of the cached schema id); the bare
producer sends bytes encoded once beforehand: that is what a ceiling means. CPU per event is
this process's CPU time (every thread: librdkafka's included) over the round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from confluent_kafka import Producer

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.clients import producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType

TARGET = 0.9


class Figure(NamedTuple):
    """One side of one round: events/s (wall) and CPU microseconds per event."""

    rate: float
    cpu_us: float


def make_events(count: int) -> list[Event]:
    return [
        Event.new(EventType.INSTANCE_SCALED, f"ten_{n % 50}").with_payload({"replicas": n % 7})
        for n in range(count)
    ]


class Bare:
    """A bare producer (the bus's configuration) writing pre-encoded records, acknowledged."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(producer_config(settings))
        self._acked = 0

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is None:
            self._acked += 1

    def send(self, records: list[tuple[str, bytes, bytes]], batch: int) -> None:
        """Write ``records`` as fast as the client takes them, waiting for Kafka's
        acknowledgement (a flush) after every ``batch`` records, as ``publish_many`` does, or
        only at the end when ``batch`` is 0 (librdkafka streaming freely: the stricter one)."""
        producer = self._producer
        on_delivery = self._on_delivery
        step = batch or len(records)
        self._acked = 0
        for start in range(0, len(records), step):
            for topic, key, value in records[start : start + step]:
                while True:
                    try:
                        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.01)
                producer.poll(0)
            producer.flush(60)
        assert self._acked == len(records), f"only {self._acked} of {len(records)} acknowledged"


async def measure(count: int, run: Callable[[], Awaitable[None]]) -> Figure:
    cpu = time.process_time()
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    return Figure(count / elapsed, (time.process_time() - cpu) * 1e6 / count)


async def rounds(settings: Settings, events: list[Event], batch: int, count: int) -> None:
    serde = serde_for(settings)
    topic = settings.topics.for_event_type(EventType.INSTANCE_SCALED)
    records = [(topic, e.tenant_id.encode(), serde.events.encode(e, topic)) for e in events]
    bare = Bare(settings)
    bus = KafkaBus(settings, serde)

    async def run_streaming() -> None:
        bare.send(records, 0)

    async def run_batched() -> None:
        bare.send(records, batch)

    async def run_bus() -> None:
        for start in range(0, len(events), batch):
            await bus.publish_many(events[start : start + batch])

    # Warm-up, not measured: producer ids, metadata, connections, the schema id.
    bare.send(records[:batch], 0)
    await bus.publish_many(events[:batch])

    sides = {"streaming": run_streaming, "batched": run_batched, "bus": run_bus}
    figures: dict[str, list[Figure]] = {name: [] for name in sides}
    order = list(sides)
    for number in range(count):
        for name in order:
            figures[name].append(await measure(len(events), sides[name]))
        order = order[1:] + order[:1]  # each side goes first in turn
        line = ", ".join(
            f"{name} {f[-1].rate:,.0f}/s ({f[-1].cpu_us:.1f} us CPU/event)"
            for name, f in figures.items()
        )
        print(f"round {number + 1}: {line}")
    await bus.close()
    report(figures, len(events), batch, count, len(records[0][2]))


def report(
    figures: dict[str, list[Figure]], events: int, batch: int, count: int, size: int
) -> None:
    def median(name: str, attribute: str) -> float:
        return statistics.median(getattr(f, attribute) for f in figures[name])

    def ratio(ceiling: str) -> float:
        pairs = zip(figures[ceiling], figures["bus"], strict=True)
        return statistics.median(bus.rate / bare.rate for bare, bus in pairs)

    print(f"events: {events} per round, batch: {batch}, rounds: {count}, bytes/event: {size}")
    labels = {
        "streaming": "bare producer, one flush per round",
        "batched": f"bare producer, a flush per {batch}",
        "bus": "KafkaBus.publish_many",
    }
    for name, label in labels.items():
        rate, cpu = median(name, "rate"), median(name, "cpu_us")
        print(f"{label:<38} {rate:>9,.0f} events/s  {cpu:5.1f} us CPU/event (medians)")
    for ceiling in ("batched", "streaming"):
        value = ratio(ceiling)
        verdict = "OK" if value >= TARGET else "BELOW TARGET"
        print(
            f"ratio to {labels[ceiling]} (median of rounds): {value:.0%} "
            f"(target >= {TARGET:.0%}) -> {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per round")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    base = Settings()
    with kafka_cluster(base) as servers:
        settings = base.model_copy(
            update={
                "bootstrap_servers": servers,
                "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
                "schema_registry_url": f"mock://{uuid.uuid4().hex}",
            }
        )
        ensure_topics(settings)
        asyncio.run(rounds(settings, make_events(args.events), args.batch, args.rounds))


if __name__ == "__main__":
    main()
