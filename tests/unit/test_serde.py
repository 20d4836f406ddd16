"""Avro serde against confluent-kafka's in-process mock registry (no broker)."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.avsc import schema_dict, schema_str
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.ids import delivery_id, new_id
from schemas.samples import sample_events
from schemas.serde import DecodeError, Serde
from schemas.webhook import EncryptedSecret, Webhook


@pytest.fixture
def serde() -> Serde:
    return Serde(f"mock://{uuid.uuid4().hex}")


def test_events_use_confluent_wire_format_and_round_trip(serde: Serde) -> None:
    for event in sample_events():
        data = serde.events.encode(event, "ctrlplane.events.x")
        assert data[0] == 0
        schema_id = struct.unpack(">I", data[1:5])[0]
        assert schema_id >= 1
        assert serde.events.schema_id("ctrlplane.events.x") == schema_id
        assert serde.events.decode(data, "ctrlplane.events.x") == event


def test_every_model_round_trips(serde: Serde) -> None:
    event = sample_events()[0]
    task = DeliveryTask.for_event(event, new_id("hook"), "https://example.com/hook")
    assert serde.tasks.decode(serde.tasks.encode(task, "d"), "d") == task
    webhook = Webhook(
        new_id("hook"),
        "ten",
        "https://example.com",
        ("instance.*",),
        True,
        (EncryptedSecret("gAAAA-token", event.timestamp),),
    )
    assert serde.webhooks.decode(serde.webhooks.encode(webhook, "w"), "w") == webhook
    record = WebhookDelivery(
        task.id,
        task.webhook_id,
        event.id,
        "ten",
        DeliveryStatus.RETRYING,
        2,
        503,
        event.timestamp,
        "HTTP 503",
        12.5,
    )
    assert serde.deliveries.decode(serde.deliveries.encode(record, "a"), "a") == record


def test_delivery_ids_are_derived_from_event_and_webhook() -> None:
    event = sample_events()[0]
    hook = new_id("hook")
    assert DeliveryTask.for_event(event, hook, "https://x").id == delivery_id(event.id, hook)
    assert delivery_id(event.id, hook) == delivery_id(event.id, hook)
    assert delivery_id(event.id, hook) != delivery_id(event.id, new_id("hook"))
    assert delivery_id(event.id, hook).startswith("deli_")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b'{"json": true}', "wire format"),
        (b"\x00", "wire format"),
        (b"\x00\x00\x00\x01", "wire format"),
        (b"\x00\x00\x00\x00\x01\xff\xff", "Avro decoding failed"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_reason(
    serde: Serde, data: bytes | None, reason: str
) -> None:
    serde.events.encode(sample_events()[0], "t")  # registers schema id 1
    with pytest.raises(DecodeError) as info:
        serde.events.decode(data, "t")
    assert reason in info.value.reason


def test_truncated_records_of_our_schema_say_where_they_end(serde: Serde) -> None:
    data = serde.events.encode(sample_events()[0], "t")
    serde.events.decode(data, "t")  # the first record learns the id: the flat reader from now on
    with pytest.raises(DecodeError) as info:
        serde.events.decode(data[:-1], "t")  # ends inside the timestamp's varint
    assert info.value.reason == (
        f"Avro decoding failed: WireFormatError: truncated varint at byte {len(data) - 8}"
        f" of {len(data) - 1}"
    )


def test_record_breaking_the_contract_is_a_decode_error(serde: Serde) -> None:
    event: Event = sample_events()[0]
    record = event.to_avro() | {"type": "instance.exploded"}
    data = _confluent_serializer(serde, "Event")(
        record, SerializationContext("t", MessageField.VALUE)
    )
    with pytest.raises(DecodeError) as info:
        serde.events.decode(data, "t")
    assert "unknown event type" in info.value.reason


def _confluent_serializer(serde: Serde, name: str) -> AvroSerializer:
    return AvroSerializer(serde.client, schema_str(name), conf={"auto.register.schemas": True})


def test_bytes_are_identical_to_confluent_serializers_both_ways(serde: Serde) -> None:
    """Our fastavro path writes exactly what confluent-kafka's AvroSerializer writes, and reads
    what it wrote; any Confluent-style client therefore interoperates."""
    event = sample_events()[0]
    ctx = SerializationContext("ctrlplane.events.instance", MessageField.VALUE)
    theirs = _confluent_serializer(serde, "Event")(event.to_avro(), ctx)
    ours = serde.events.encode(event, "ctrlplane.events.instance")
    assert ours == theirs
    assert serde.events.decode(theirs, "ctrlplane.events.instance") == event
    decoded = AvroDeserializer(serde.client)(ours, ctx)
    assert Event.from_avro(decoded) == event


def test_records_of_an_older_schema_version_are_resolved(serde: Serde) -> None:
    older = json.loads(schema_str("Event"))
    older["fields"] = [f for f in older["fields"] if f["name"] != "actor_id"]
    event = sample_events()[3]
    record = {k: v for k, v in event.to_avro().items() if k != "actor_id"}
    data = AvroSerializer(serde.client, json.dumps(older))(
        record, SerializationContext("old", MessageField.VALUE)
    )
    assert serde.events.decode(data, "old") == event


def test_unknown_schema_id_and_trailing_bytes_are_decode_errors(serde: Serde) -> None:
    with pytest.raises(DecodeError, match="not in the registry"):
        serde.events.decode(b"\x00\x00\x00\x03\xe7" + b"\x00" * 8, "t")
    good = serde.events.encode(sample_events()[0], "t")
    with pytest.raises(DecodeError, match="trailing"):
        serde.events.decode(good + b"\x00", "t")


def test_schema_dicts_are_not_shared_between_callers() -> None:
    # fastavro's parse_schema and users' code may change the dict they get; the next caller
    # (a codec built later in the process) must still get the schema as written.
    first = schema_dict("Event")
    first["fields"].clear()
    assert schema_dict("Event")["fields"], "a caller's change leaked into the cached schema"
