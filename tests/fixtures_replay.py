"""A known data set on the event topics for replay tests: several tenants, partitions,
subsystems and explicit record timestamps (so time ranges are exact), plus one corrupt record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer
from typer.testing import CliRunner, Result

from cpevents.cli import app
from plumbing.kafka.clients import producer_config
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import INSTANCE, new_id
from schemas.serde import Serde

# A tenant always lands on the same partition (the contract's key → partition guarantee),
# and the three tenants cover the three partitions of every event topic.
TENANT_PARTITION = {"ten_a": 0, "ten_b": 1, "ten_c": 2}
TYPES = [
    EventType.INSTANCE_CREATED,
    EventType.DEPLOY_STARTED,
    EventType.INSTANCE_STARTED,
    EventType.HEALTH_FAILED,
    EventType.DOMAIN_ADDED,
    EventType.INSTANCE_STOPPED,
    EventType.TENANT_CREATED,
    EventType.DEPLOY_SUCCEEDED,
]


@dataclass(frozen=True)
class Stored:
    """One record of the data set and where it went."""

    timestamp_ms: int
    topic: str
    partition: int
    event: Event | None  # None: the corrupt record


@dataclass(frozen=True)
class DataSet:
    settings: Settings
    serde: Serde
    base_ms: int
    records: list[Stored]
    instances: list[str]
    corrupt_at: tuple[str, int, int]  # topic, partition, offset

    @property
    def events(self) -> list[Stored]:
        return [r for r in self.records if r.event is not None]

    def expected(self, since_ms: int | None = None, until_ms: int | None = None) -> list[Event]:
        """The events of the window in replay order: timestamp, topic, partition, offset."""
        ordered = sorted(self.events, key=lambda r: (r.timestamp_ms, r.topic, r.partition))
        return [
            r.event
            for r in ordered
            if r.event is not None
            and (since_ms is None or r.timestamp_ms >= since_ms)
            and (until_ms is None or r.timestamp_ms < until_ms)
        ]


def produce_dataset(settings: Settings, serde: Serde, count: int = 48) -> DataSet:
    """``count`` events one second apart (two pairs share a timestamp) and one corrupt record.

    Each partition is produced in one go (partition 0, then 1, …) so the records reach Kafka in
    an order that differs from the timestamp order a replay must restore.
    """
    # An hour ago, on a whole second: well inside the topics' retention.
    base_ms = (int(time.time()) - 3600) * 1000
    instances = [new_id(INSTANCE) for _ in range(3)]
    tenants = list(TENANT_PARTITION)
    records: list[Stored] = []
    for index in range(count):
        tenant = tenants[index % 3]
        # Equal timestamps on different partitions test the deterministic tie-break.
        timestamp_ms = base_ms + (index - 1 if index in (7, 20) else index) * 1000
        event = (
            Event.new(TYPES[index % len(TYPES)], tenant)
            .with_instance(instances[index % 3 if index % 4 else (index + 1) % 3])
            .with_payload({"n": index})
        )
        event = Event(
            id=event.id,
            type=event.type,
            tenant_id=event.tenant_id,
            timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
            instance_id=event.instance_id,
            payload=event.payload,
        )
        topic = settings.topics.for_event_type(event.type)
        records.append(Stored(timestamp_ms, topic, TENANT_PARTITION[tenant], event))
    corrupt_ts = base_ms + 10_500
    corrupt_topic = settings.topics.events("instance")
    records.append(Stored(corrupt_ts, corrupt_topic, 0, None))

    producer = Producer(producer_config(settings))
    offsets: dict[tuple[str, int, int], int] = {}

    def remember(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        offsets[(msg.topic() or "", msg.partition() or 0, msg.timestamp()[1])] = msg.offset() or 0

    for partition in sorted(set(TENANT_PARTITION.values())):
        for stored in sorted(records, key=lambda r: r.timestamp_ms):
            if stored.partition != partition:
                continue
            if stored.event is None:
                # Wire-format framing around an unknown schema id and bytes that are no Avro.
                value, key = b"\x00\x7f\xff\xff\xffnot avro at all", b"ten_a"
            else:
                value = serde.events.encode(stored.event, stored.topic)
                key = stored.event.tenant_id.encode()
            producer.produce(
                stored.topic,
                key=key,
                value=value,
                partition=stored.partition,
                timestamp=stored.timestamp_ms,
                on_delivery=remember,
            )
        producer.flush(30)
    assert producer.flush(30) == 0
    corrupt_offset = offsets[(corrupt_topic, 0, corrupt_ts)]
    return DataSet(settings, serde, base_ms, records, instances, (corrupt_topic, 0, corrupt_offset))


def rfc3339_ms(epoch_ms: int) -> str:
    """``epoch_ms`` as an RFC 3339 argument for --since/--until."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def invoke_replay(settings: Settings, *args: str, input: str | None = None) -> Result:
    """Run ``cpevents replay ARGS`` in-process against ``settings`` (topics and registry)."""
    from tests.conftest import settings_env

    return CliRunner().invoke(
        app, ["replay", *args], env=settings_env(settings), input=input, catch_exceptions=False
    )
