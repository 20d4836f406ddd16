"""Replay throughput vs a bare confluent-kafka read of the same range, in the same run.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/replay.py [--events N]

Prints events/s for:
  bare read          assign every partition, consume to the high watermark, nothing else
                     (the ceiling: what librdkafka hands Python)
  bare read+decode   the same, each value decoded with confluent-kafka's AvroDeserializer
                     (what a hand-written audit script does)
  replay             cpevents' replay: offsets-for-times plan, heap merge across partitions,
                     decode, filter, render JSON lines (to a null sink)
  replay --tenant    the same with a filter that keeps a third of the events
and each replay's ratio to the bare read (target >= 50 %).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from cpevents.kafka.clients import consumer_config, producer_config
from cpevents.kafka.resolve import kafka_cluster
from cpevents.kafka.topics import ensure_topics
from cpevents.settings import Settings
from schemas.catalog import EventType
from schemas.event import Event
from schemas.serde import Serde
from streams.audit import RangeReader, RecordFilter, ReplayRequest, ReplayStats, TimeRange, entries
from streams.audit.render import json_line

TYPES = [EventType.INSTANCE_STARTED, EventType.DEPLOY_SUCCEEDED, EventType.HEALTH_PASSED]
TENANTS = ["ten_a", "ten_b", "ten_c"]


def produce(settings: Settings, serde: Serde, count: int, base_ms: int) -> None:
    producer = Producer(producer_config(settings, **{"linger.ms": 20, "batch.size": 1_000_000}))
    template = Event.new(EventType.INSTANCE_STARTED, "ten_a").with_payload(
        {"replicas": 3, "region": "eu-west-1", "image": "registry.example/api:1.4.2"}
    )
    for index in range(count):
        timestamp_ms = base_ms + index
        event = Event(
            id=Event.new(TYPES[index % 3], "x").id,
            type=TYPES[index % 3],
            tenant_id=TENANTS[(index // 3) % 3],
            timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
            payload=template.payload,
        )
        topic = settings.topics.for_event_type(event.type)
        while True:
            try:
                producer.produce(
                    topic,
                    key=event.tenant_id.encode(),
                    value=serde.events.encode(event, topic),
                    timestamp=timestamp_ms,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def bare_read(
    settings: Settings, topics: list[str], decode: Callable[[bytes, str], object] | None
) -> int:
    consumer = Consumer(
        consumer_config(settings, f"bench-{uuid.uuid4().hex}", **{"enable.partition.eof": True})
    )
    assignment = []
    for topic in topics:
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low:
                assignment.append(TopicPartition(topic, partition, low))
    consumer.assign(assignment)
    remaining, count = len(assignment), 0
    while remaining:
        for message in consumer.consume(1000, 0.2):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining -= 1
                continue
            if decode is not None:
                decode(message.value(), message.topic())
            count += 1
    consumer.close()
    return count


def replay(settings: Settings, serde: Serde, request: ReplayRequest) -> tuple[int, int]:
    stats = ReplayStats()
    written = 0
    with RangeReader(settings, request.topics(settings), request.time_range) as reader:
        for _, entry in entries(request, reader.records(), serde, lambda r, e: None, stats):
            written += len(json_line(entry)) + 1
    return stats.read, stats.matched


def timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    with kafka_cluster(Settings()) as servers:
        settings = Settings(
            bootstrap_servers=servers,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            schema_registry_url=f"mock://{uuid.uuid4().hex}",
        )
        ensure_topics(settings)
        serde = Serde(settings.schema_registry_url)
        base_ms = int(time.time() * 1000) - 3_600_000
        print(f"producing {args.events} events over 3 topics x {settings.partitions} partitions…")
        produce(settings, serde, args.events, base_ms)
        topics = [settings.topics.for_event_type(t) for t in TYPES]
        window = TimeRange(base_ms, base_ms + args.events)

        bare_s, bare_n = timed(lambda: bare_read(settings, topics, None))
        dec_s, dec_n = timed(lambda: bare_read(settings, topics, serde.events.decode))
        all_s, (all_read, all_n) = timed(
            lambda: replay(
                settings,
                serde,
                ReplayRequest(time_range=window, subsystems=("instance", "deploy", "health")),
            )
        )
        one_s, (one_read, one_n) = timed(
            lambda: replay(
                settings,
                serde,
                ReplayRequest(
                    time_range=window,
                    selection=RecordFilter.of(tenants=["ten_b"]),
                    subsystems=("instance", "deploy", "health"),
                ),
            )
        )
        assert bare_n == dec_n == all_n == all_read == one_read == args.events, (
            bare_n,
            dec_n,
            all_n,
        )
        bare = bare_n / bare_s
        rows = [
            ("bare read (ceiling)", bare_n, bare_s),
            ("bare read + AvroDeserializer", dec_n, dec_s),
            ("replay (all events, JSON)", all_read, all_s),
            (f"replay --tenant ten_b ({one_n} kept)", one_read, one_s),
        ]
        print(f"{'':38}{'records':>9}{'seconds':>9}{'records/s':>12}{'vs bare':>9}")
        for name, count, seconds in rows:
            rate = count / seconds
            print(f"{name:38}{count:9d}{seconds:9.2f}{rate:12,.0f}{rate / bare:9.1%}")
        decoded = dec_n / dec_s
        print(f"replay vs bare read + AvroDeserializer: {all_read / all_s / decoded:.1%}")


if __name__ == "__main__":
    main()
