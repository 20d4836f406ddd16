"""Replay throughput vs a bare confluent-kafka read of the same range, in the same run.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/replay.py [--events N]

Prints events/s for:
  bare read          the ceiling: what librdkafka hands Python for the same range. Offsets for
                     the window's times, every partition assigned, consume() in batches of the
                     same size with the same consumer settings as replay (READ_CONFIG), each
                     partition done at its end offset; nothing else.
  bare read+decode   the same, each value decoded with confluent-kafka's AvroDeserializer
                     (what a hand-written audit script does)
  replay             cpevents' replay as `cpevents replay` runs it: offsets-for-times plan, heap
                     merge across partitions, decode, filter, JSON lines written in chunks to
                     /dev/null
  replay --tenant    the same with a filter that keeps a third of the events
and each replay's ratio to the bare read (target >= 50 %). Every figure includes its own set-up
(consumer, metadata, offsets). The machine may be shared: compare ratios over several runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cpevents.localkafka.resolve import kafka_cluster
from plumbing.kafka.clients import admin_config, consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde
from streams.audit import RangeReader, RecordFilter, ReplayRequest, ReplayStats, TimeRange, entries
from streams.audit.reader import CONSUME_BATCH, READ_CONFIG
from streams.audit.render import JsonLines

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


def _window_assignment(
    consumer: Consumer, topics: list[str], window: TimeRange
) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
    """Where each partition's part of ``window`` starts, and the offset it ends before."""
    partitions = []
    for topic in topics:
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            partitions.append(TopicPartition(topic, partition))
    assert window.since_ms is not None and window.until_ms is not None
    starts = consumer.offsets_for_times(
        [TopicPartition(tp.topic, tp.partition, window.since_ms) for tp in partitions], 10
    )
    stops = consumer.offsets_for_times(
        [TopicPartition(tp.topic, tp.partition, window.until_ms) for tp in partitions], 10
    )
    ends: dict[tuple[str, int], int] = {}
    assignment = []
    for tp, start, stop in zip(partitions, starts, stops, strict=True):
        high = consumer.get_watermark_offsets(tp, timeout=10)[1]
        first = high if start.offset < 0 else start.offset
        end = high if stop.offset < 0 else min(stop.offset, high)
        if end > first:
            ends[(tp.topic, tp.partition)] = end
            assignment.append(TopicPartition(tp.topic, tp.partition, first))
    return assignment, ends


def bare_read(
    settings: Settings,
    topics: list[str],
    window: TimeRange,
    decode: Callable[[bytes, str], object] | None,
) -> int:
    """Records of ``window`` in ``topics``, read as plainly as confluent-kafka allows."""
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex}", **READ_CONFIG))
    assignment, ends = _window_assignment(consumer, topics, window)
    consumer.assign(assignment)
    count = 0
    while ends:
        for message in consumer.consume(CONSUME_BATCH, 0.2):
            coordinates = (message.topic() or "", message.partition() or 0)
            if coordinates not in ends:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    del ends[coordinates]
                continue
            offset, end = message.offset() or 0, ends[coordinates]
            if offset >= end:
                del ends[coordinates]
                continue
            if decode is not None:
                decode(message.value() or b"", coordinates[0])
            count += 1
            if offset + 1 >= end:
                del ends[coordinates]
    consumer.close()
    return count


def avro_deserializer(serde: Serde) -> Callable[[bytes, str], object]:
    deserializer = AvroDeserializer(serde.client)

    def decode(value: bytes, topic: str) -> object:
        return deserializer(value, SerializationContext(topic, MessageField.VALUE))

    return decode


def replay(settings: Settings, serde: Serde, request: ReplayRequest) -> tuple[int, int]:
    """What `cpevents replay` does for JSON output, to /dev/null."""
    stats = ReplayStats()
    with (
        open(os.devnull, "wb") as sink,
        RangeReader(
            settings, request.topics(settings), request.time_range, headers=request.reads_headers
        ) as reader,
    ):
        lines = JsonLines(sink)
        records = reader.records(lambda _consumed: lines.flush())
        for _, entry in entries(
            request, records, serde, lambda r, e: None, stats, events_as_json=True
        ):
            lines.write(entry)
        lines.flush()
    return stats.read, stats.matched


def timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with kafka_cluster(Settings()) as servers:
        settings = Settings(
            bootstrap_servers=servers,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            schema_registry_url=f"mock://{uuid.uuid4().hex}",
        )
        ensure_topics(settings)
        try:
            run_bench(settings, args.events, args.rounds)
        finally:
            # The cluster may be shared: leave no bench topics behind.
            names = [spec.name for spec in settings.topics.specs(settings.partitions)]
            admin = AdminClient(admin_config(settings))  # referenced until the deletes are done
            for future in admin.delete_topics(names).values():
                future.result(timeout=30)


def run_bench(settings: Settings, events: int, rounds: int) -> None:
    """Produce ``events`` once, then time every reader over them ``rounds`` times."""
    serde = serde_for(settings)
    base_ms = int(time.time() * 1000) - 3_600_000
    print(f"producing {events} events over 3 topics x {settings.partitions} partitions…")
    produce(settings, serde, events, base_ms)
    topics = [settings.topics.for_event_type(t) for t in TYPES]
    window = TimeRange(base_ms, base_ms + events)

    subsystems = ("instance", "deploy", "health")
    everything = ReplayRequest(time_range=window, subsystems=subsystems)
    one_tenant = ReplayRequest(
        time_range=window, selection=RecordFilter.of(tenants=["ten_b"]), subsystems=subsystems
    )
    decode = avro_deserializer(serde)
    names = [
        "bare read (ceiling)",
        "bare read + AvroDeserializer",
        "replay (all events, JSON)",
        "replay --tenant ten_b",
    ]
    runs: list[Callable[[], int]] = [
        lambda: bare_read(settings, topics, window, None),
        lambda: bare_read(settings, topics, window, decode),
        lambda: replay(settings, serde, everything)[0],
        lambda: replay(settings, serde, one_tenant)[0],
    ]
    # Interleaved rounds, so load from others on the machine hits every figure alike.
    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for index, run in enumerate(runs):
            elapsed, count = timed(run)
            assert count == events, (names[index], count)
            seconds[index].append(elapsed)
    kept = replay(settings, serde, one_tenant)[1]
    print(f"{rounds} rounds; median of each, and the median of the per-round ratios")
    print(f"{'':38}{'records':>9}{'seconds':>9}{'records/s':>12}{'vs bare':>9}")
    for index, name in enumerate(names):
        median = statistics.median(seconds[index])
        ratio = statistics.median(
            bare / mine for bare, mine in zip(seconds[0], seconds[index], strict=True)
        )
        label = f"{name} ({kept} kept)" if index == 3 else name
        print(f"{label:38}{events:9d}{median:9.2f}{events / median:12,.0f}{ratio:9.1%}")
    per_round = ", ".join(
        f"{bare / mine:.0%}" for bare, mine in zip(seconds[0], seconds[2], strict=True)
    )
    print(f"replay (all events, JSON) vs bare read, per round: {per_round}")


if __name__ == "__main__":
    main()
