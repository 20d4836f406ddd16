"""Replay throughput vs a bare confluent-kafka read of the same range, in the same run.

    CPEVENTS_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/replay.py [--events N]

Prints events/s for:
  bare read          the ceiling: what librdkafka hands Python for the same range. Offsets for
                     the window's times, every partition assigned, consume() in batches of the
                     same size with the same consumer settings as replay (READ_CONFIG), never
                     asking for more than the offsets left (as replay: else the last call
                     idles for its whole timeout), each partition done at its end offset;
                     nothing else.
  bare read+decode   the same, each value decoded with confluent-kafka's AvroDeserializer
                     (what a hand-written audit script does)
  replay             cpevents' replay as `cpevents replay` runs it for JSON output (its batch
                     path, streams/audit/run.json_line_batches): offsets-for-times plan, merge
                     across partitions, decode (transcoded from the Avro bytes), filter, JSON
                     lines written in chunks to /dev/null
  replay --tenant    the same with a filter that keeps a third of the events
and each replay's ratio to the bare read (target >= 75 %). Every figure includes its own set-up
(consumer, metadata, offsets). Beside wall time, each run's process CPU time (time.process_time:
every thread, librdkafka's included) is printed per record: on a shared machine it is the
robust figure, wall-clock rates move with the neighbours' load. ``--skip-deserializer`` leaves
out the AvroDeserializer row (the slowest, and not a target).
"""

from __future__ import annotations

import argparse
import gc
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
from streams.audit import RangeReader, RecordFilter, ReplayRequest, ReplayStats, TimeRange
from streams.audit.reader import CONSUME_BATCH, READ_CONFIG
from streams.audit.render import JsonLines
from streams.audit.run import json_line_batches

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
    # As RangeReader: no more than the offsets left, so that the last call does not idle.
    left = sum(end - tp.offset for tp, end in zip(assignment, ends.values(), strict=True))
    while ends:
        for message in consumer.consume(max(1, min(CONSUME_BATCH, left - count)), 0.2):
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
    """What `cpevents replay` does for JSON output (its batch path), to /dev/null."""
    stats = ReplayStats()
    gc.freeze()  # as the command does before reading (start-up state is not the read's)
    with (
        open(os.devnull, "wb") as sink,
        RangeReader(
            settings, request.topics(settings), request.time_range, headers=request.reads_headers
        ) as reader,
    ):
        lines = JsonLines(sink)
        batches = reader.batches(lambda _consumed: lines.flush())
        for chunk in json_line_batches(request, batches, serde, lambda r, e: None, stats):
            lines.write_lines(chunk)
        lines.flush()
    return stats.read, stats.matched


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """Wall seconds, process CPU seconds (all threads) and the result of ``run``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - started, time.process_time() - cpu_started, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-deserializer", action="store_true")
    args = parser.parse_args()
    with kafka_cluster(Settings()) as servers:
        settings = Settings(
            bootstrap_servers=servers,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            schema_registry_url=f"mock://{uuid.uuid4().hex}",
        )
        ensure_topics(settings)
        try:
            run_bench(settings, args.events, args.rounds, skip_deserializer=args.skip_deserializer)
        finally:
            # The cluster may be shared: leave no bench topics behind.
            names = [spec.name for spec in settings.topics.specs(settings.partitions)]
            admin = AdminClient(admin_config(settings))  # referenced until the deletes are done
            for future in admin.delete_topics(names).values():
                future.result(timeout=30)


def run_bench(settings: Settings, events: int, rounds: int, *, skip_deserializer: bool) -> None:
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
    runs: dict[str, Callable[[], int]] = {
        "bare read (ceiling)": lambda: bare_read(settings, topics, window, None),
        "bare read + AvroDeserializer": lambda: bare_read(settings, topics, window, decode),
        "replay (all events, JSON)": lambda: replay(settings, serde, everything)[0],
        "replay --tenant ten_b": lambda: replay(settings, serde, one_tenant)[0],
    }
    if skip_deserializer:
        del runs["bare read + AvroDeserializer"]
    # Interleaved rounds, so load from others on the machine hits every figure alike.
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            elapsed, cpu_seconds, count = timed(run)
            assert count == events, (name, count)
            seconds[name].append(elapsed)
            cpu[name].append(cpu_seconds)
    kept = replay(settings, serde, one_tenant)[1]
    _report(events, rounds, kept, seconds, cpu)


def _report(
    events: int,
    rounds: int,
    kept: int,
    seconds: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    """Medians of the rounds, and the medians of the per-round ratios to the bare read."""
    bare = "bare read (ceiling)"
    print(f"{rounds} rounds; median of each, and the median of the per-round ratios")
    print(
        f"{'':38}{'records':>9}{'seconds':>9}{'records/s':>12}{'vs bare':>9}"
        f"{'CPU µs/rec':>12}{'CPU vs bare':>13}"
    )
    for name in seconds:
        median = statistics.median(seconds[name])
        ratio = statistics.median(
            ceiling / mine for ceiling, mine in zip(seconds[bare], seconds[name], strict=True)
        )
        cpu_per_record = statistics.median(cpu[name]) / events * 1e6
        cpu_ratio = statistics.median(
            ceiling / mine for ceiling, mine in zip(cpu[bare], cpu[name], strict=True)
        )
        label = f"{name} ({kept} kept)" if name.startswith("replay --tenant") else name
        print(
            f"{label:38}{events:9d}{median:9.2f}{events / median:12,.0f}{ratio:9.1%}"
            f"{cpu_per_record:12.2f}{cpu_ratio:13.1%}"
        )
    everything = "replay (all events, JSON)"
    for label, figures in (("wall", seconds), ("CPU", cpu)):
        per_round = ", ".join(
            f"{ceiling / mine:.0%}"
            for ceiling, mine in zip(figures[bare], figures[everything], strict=True)
        )
        print(f"{everything} vs bare read ({label}), per round: {per_round}")
    cpu_rounds = ", ".join(
        f"{bare_cpu / events * 1e6:.2f}/{mine / events * 1e6:.2f}"
        for bare_cpu, mine in zip(cpu[bare], cpu[everything], strict=True)
    )
    print(f"CPU µs/record per round (bare/replay): {cpu_rounds}")


if __name__ == "__main__":
    main()
