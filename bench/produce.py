"""Events/s through ``KafkaBus.publish_many`` batches vs a bare confluent-kafka producer of the
same bytes, in the same run (the ceiling). Target: the bus reaches >= 50 % of the bare producer.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/produce.py [--events N]

Without CPEVENTS_BOOTSTRAP_SERVERS a throwaway broker is started (as in the tests). The bus
path includes Avro encoding (cached schema id); the bare producer sends pre-encoded bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from confluent_kafka import Producer

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.clients import producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde


def make_events(count: int) -> list[Event]:
    return [
        Event.new(EventType.INSTANCE_SCALED, f"ten_{n % 50}").with_payload({"replicas": n % 7})
        for n in range(count)
    ]


def bare(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> float:
    """Events/s of a bare producer (same config) writing ``records``, acknowledged."""
    producer = Producer(producer_config(settings))
    acked = 0

    def on_delivery(err: object, _msg: object) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    started = time.perf_counter()
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    assert acked == len(records), f"only {acked} of {len(records)} acknowledged"
    return len(records) / elapsed


async def bus(settings: Settings, serde: Serde, events: list[Event], batch: int) -> float:
    """Events/s of ``KafkaBus.publish_many`` in batches of ``batch`` (each acknowledged)."""
    kafka_bus = KafkaBus(settings, serde)
    await kafka_bus.publish(events[0])  # registers the schema: not part of the measurement
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        await kafka_bus.publish_many(events[start : start + batch])
    elapsed = time.perf_counter() - started
    await kafka_bus.close()
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
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
        serde = serde_for(settings)
        events = make_events(args.events)
        topic = settings.topics.for_event_type(EventType.INSTANCE_SCALED)
        records = [(topic, e.tenant_id.encode(), serde.events.encode(e, topic)) for e in events]
        ceiling = bare(settings, records)
        through_bus = asyncio.run(bus(settings, serde, events, args.batch))
        ratio = through_bus / ceiling
        print(f"events: {args.events}, batch: {args.batch}, bytes/event: {len(records[0][2])}")
        print(f"bare confluent-kafka producer (ceiling): {ceiling:,.0f} events/s")
        print(f"KafkaBus.publish_many:                   {through_bus:,.0f} events/s")
        print(f"ratio: {ratio:.0%} (target >= 50%) -> {'OK' if ratio >= 0.5 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
