"""The processor API without Kafka: the cpevents-avro codec, typed event topics, admission
(filtering and dead-lettering), outputs and the in-memory harness."""

from __future__ import annotations

import copy
import json
import re
import socket
import uuid
from typing import Any, cast

import faust
import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from faust.serializers import codecs
from faust.types import Message

from schemas.avsc import schema_dict
from schemas.event import Event
from schemas.ids import INSTANCE, new_id
from schemas.serde import Serde
from schemas.topics import Topics
from streams.app import StreamsContext
from streams.codec import CODEC_NAME, EventCodec, Undecodable, decode_event
from streams.processor_api import (
    DLT_SOURCE_PREFIX,
    EventFilter,
    Output,
    ProcessorStream,
    _Admit,
    memory_channel,
)
from streams.testing import ProcessorTest
from tests.fixtures_streams import poison_values

TOPICS = Topics(prefix="unit.")


@pytest.fixture
def serde() -> Serde:
    return Serde(f"mock://{uuid.uuid4().hex}")


# -- the codec -------------------------------------------------------------------------------------


def test_codec_round_trips_events_in_confluent_wire_format(serde: Serde) -> None:
    codec = EventCodec(serde, TOPICS)
    event = Event.new("deploy.started", "ten_a").with_payload({"deploy_id": "d1"})
    data = codec.dumps(event)
    assert data[0] == 0 and data == serde.events.encode(event, TOPICS.events("deploy"))
    assert codec.loads(data) == event


def test_channels_decoding_the_same_record_share_one_decoded_event(serde: Serde) -> None:
    codec = EventCodec(serde, TOPICS)
    data = codec.dumps(Event.new("deploy.started", "ten_a"))
    first = codec.loads(data)
    assert codec.loads(data) is first  # the next channel asks for the same bytes object
    assert codec.loads(bytes(bytearray(data))) == first  # equal bytes are decoded again
    assert isinstance(codec.loads(b"junk"), Undecodable)
    assert codec.loads(data) is not first and codec.loads(data) == first


def test_codec_resolves_records_of_an_older_event_schema(serde: Serde) -> None:
    # An older writer: no actor_id nor payload (both have defaults in today's schema).
    old = copy.deepcopy(schema_dict("Event"))  # the cached dict must stay intact
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("actor_id", "payload")]
    event = Event.new("instance.created", "ten_a").with_instance(new_id(INSTANCE))
    record = {k: v for k, v in event.to_avro().items() if k not in ("actor_id", "payload")}
    serializer = AvroSerializer(serde.client, json.dumps(old), to_dict=lambda obj, _ctx: obj)
    topic = TOPICS.events("instance")
    data = serializer(record, SerializationContext(topic, MessageField.VALUE))
    decoded = EventCodec(serde, TOPICS).loads(data)
    assert decoded == event  # payload {} and actor_id None from the reader's defaults


def test_codec_never_raises_on_a_bad_record(serde: Serde) -> None:
    codec = EventCodec(serde, TOPICS)
    for fragment, value in poison_values(serde, TOPICS.events("instance")).items():
        decoded = codec.loads(value)
        assert isinstance(decoded, Undecodable) and not decoded.retry
        assert fragment in decoded.reason, (fragment, decoded.reason)


def test_an_unreachable_registry_is_retried_not_dead_lettered(serde: Serde) -> None:
    value = serde.events.encode(Event.new("health.failed", "ten_a"), TOPICS.events("health"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nobody = Serde({"url": f"http://127.0.0.1:{port}", "max.retries": 0, "timeout": 1})
    decoded = decode_event(nobody, value)
    assert isinstance(decoded, Undecodable) and decoded.retry


async def test_a_record_undecoded_for_an_outage_is_decoded_again_not_parked() -> None:
    async with ProcessorTest(_recorder([])) as harness:
        io = harness.ctx.processor_io()
        event = Event.new("health.failed", "ten_a")
        value = harness.serde.events.encode(event, harness.settings.topics.events("health"))
        # As the codec returns it when the registry did not answer; it answers now.
        outage = Undecodable(value, "schema registry unavailable: timed out", retry=True)
        assert await io.decode_retrying(outage) == event
        assert harness.dead_letters() == []


async def test_the_codec_is_registered_by_name_for_app_topics() -> None:
    async with ProcessorTest(_recorder([])) as harness:
        assert codecs.get_codec(CODEC_NAME) is harness.ctx.processor_io().codec
        topic = harness.app.topic("unit.anything", value_serializer=CODEC_NAME)
        event = Event.new("tenant.created", "ten_a")
        message = _message(codecs.dumps(CODEC_NAME, event))
        assert topic.schema.loads_value(harness.app, message) == event


# -- typed event topics ----------------------------------------------------------------------


def test_a_topic_subscribes_only_to_the_subsystems_of_its_types() -> None:
    assert EventFilter.compile(["deploy.*"]).topics(TOPICS) == ["unit.events.deploy"]
    assert EventFilter.compile(["health.failed", "cert.expiring"]).topics(TOPICS) == [
        "unit.events.health",
        "unit.events.network",
    ]
    assert len(EventFilter.compile().topics(TOPICS)) == 5


def test_a_pattern_matching_no_type_is_an_error_naming_types() -> None:
    with pytest.raises(
        ValueError, match=re.escape("types: 'deploy.finished' matches no event type")
    ):
        EventFilter.compile(["deploy.finished"])


async def test_the_routers_raw_stream_gets_no_admission_step() -> None:
    # The router's path must not pay for processors: only EventsTopic streams get the step.
    async with ProcessorTest(_recorder([])) as harness:
        ctx = harness.ctx
        raw = cast(ProcessorStream, harness.app.stream(ctx.events_topic))
        typed = cast(ProcessorStream, harness.app.stream(ctx.events(types=["deploy.*"])))
        assert isinstance(raw, ProcessorStream) and raw._processors == []
        assert [type(p) for p in typed._processors] == [_Admit]


async def test_an_agent_sees_only_the_types_and_tenants_it_asked_for() -> None:
    seen: list[Event] = []
    async with ProcessorTest(_recorder(seen, ["deploy.*"], ["ten_a"])) as harness:
        wanted = Event.new("deploy.failed", "ten_a")
        await harness.send(
            Event.new("deploy.started", "ten_b"),
            Event.new("health.failed", "ten_a"),
            wanted,
        )
        assert seen == [wanted]


async def test_an_undecodable_record_is_dead_lettered_naming_the_processor(serde: Serde) -> None:
    seen: list[Event] = []
    async with ProcessorTest(_recorder(seen, name="recorder")) as harness:
        topic = harness.settings.topics.events("instance")
        poison = poison_values(harness.serde, topic)
        for value in poison.values():
            await harness.send_record(topic, value, b"ten_poison")
        await harness.send_record(topic, None, b"ten_poison")  # a tombstone
        good = Event.new("instance.created", "ten_a")
        await harness.send(good)  # the agent is still running
        assert seen == [good]
        letters = harness.dead_letters()
        assert len(letters) == len(poison) + 1
        for fragment, letter in zip([*poison, "empty value"], letters, strict=True):
            assert fragment in letter.reason
            assert letter.source == DLT_SOURCE_PREFIX + "recorder"
            assert letter.extra["processor"] == "recorder"
            assert letter.original_topic == topic
        dlt = harness.records(harness.settings.topics.events_dlt)
        assert [r.value for r in dlt] == [*poison.values(), None]  # parked untouched


async def test_fausts_own_test_context_runs_an_agent_of_our_app() -> None:
    seen: list[Event] = []
    harness = ProcessorTest(_recorder(seen, ["deploy.*"]))  # only its app: not entered
    agent = harness.app.agents["recorder"]
    wanted = Event.new("deploy.started", "ten_a")
    # Faust's plain in-memory channel hands the agent what is put, as it is.
    async with agent.test_context() as plain:
        await plain.put(wanted)
    assert seen == [wanted]
    # With memory_channel, what is put is admitted as on a worker: raw bytes are decoded and
    # filtered (a filtered value is never "processed": do not wait for it).
    channel = memory_channel(harness.app, agent.channel, "recorder")
    async with agent.test_context(channel=channel) as admitted:
        topic = harness.settings.topics.events("health")
        other = Event.new("health.failed", "ten_a")
        await admitted.put(harness.serde.events.encode(other, topic), wait=False)
        await admitted.put(harness.serde.events.encode(wanted, topic))
    assert seen == [wanted, wanted]


# -- outputs ---------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Seen",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "n", "type": "int"}],
}


async def test_an_output_writes_its_own_schema_and_names_a_bad_field() -> None:
    outputs: dict[str, Any] = {}

    def install(ctx: StreamsContext) -> None:
        outputs["seen"] = ctx.output("seen", schema=json.dumps(SCHEMA))
        outputs["events"] = ctx.output("copies")
        _recorder([])(ctx)

    async with ProcessorTest(install) as harness:
        event = Event.new("instance.created", "ten_a")
        await outputs["seen"].send("k1", {"event_id": event.id, "n": 1})
        await outputs["events"].send_many([(event.tenant_id, event)])
        assert harness.outputs("seen") == [("k1", {"event_id": event.id, "n": 1})]
        assert harness.outputs("copies") == [("ten_a", event)]
        assert harness.sink.declared == {"test.seen", "test.copies"}
        subject = harness.serde.client.get_latest_version("test.seen-value")
        assert json.loads(cast(str, subject.schema.schema_str))["name"] == "Seen"
        with pytest.raises(ValueError, match=re.escape("Seen.n is <one>")):
            await outputs["seen"].send("k2", {"event_id": event.id, "n": "one"})
        with pytest.raises(TypeError, match="carries Events"):
            await outputs["events"].send("k3", {"event_id": event.id})


# -- helpers ---------------------------------------------------------------------------------


def _recorder(
    seen: list[Event],
    types: list[str] | None = None,
    tenants: list[str] | None = None,
    name: str = "recorder",
) -> Any:
    def install(ctx: StreamsContext) -> None:
        @ctx.app.agent(ctx.events(types or [], tenants or []), name=name)
        async def record(events: faust.StreamT[Event]) -> None:
            async for event in events:
                seen.append(event)

    return install


def _message(value: bytes) -> Message:
    return Message(
        topic="unit.anything",
        partition=0,
        offset=0,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=None,
        value=value,
        checksum=b"",
    )


class _FlakyRegistryOutput(Output):
    """An output whose schema registration fails with ``errors`` (HTTP statuses) first."""

    def __init__(self, errors: list[int]) -> None:
        self.topic = "t.alerts"
        self._errors = errors

    def encode(self, value: Any) -> bytes:
        if self._errors:
            status = self._errors.pop(0)
            raise SchemaRegistryError(status, status * 100, "registry says no")
        return b"\x00encoded"


async def test_a_registry_outage_is_waited_out_but_a_refused_schema_is_raised() -> None:
    assert await _FlakyRegistryOutput([503])._encoded({}) == b"\x00encoded"
    with pytest.raises(SchemaRegistryError):  # incompatible: waiting would stall forever
        await _FlakyRegistryOutput([409])._encoded({})
