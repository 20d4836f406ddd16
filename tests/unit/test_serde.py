"""Avro serde against confluent-kafka's in-process mock registry (no broker)."""

from __future__ import annotations

import struct
import uuid

import pytest

from schemas.delivery import DeliveryStatus, DeliveryTask, WebhookDelivery
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


def test_record_breaking_the_contract_is_a_decode_error(serde: Serde) -> None:
    event: Event = sample_events()[0]
    record = event.to_avro() | {"type": "instance.exploded"}
    raw = serde.events._serializer  # encode a bad record through the real serializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    class Raw:
        def to_avro(self) -> dict[str, object]:
            return record

    data = raw(Raw(), SerializationContext("t", MessageField.VALUE))
    with pytest.raises(DecodeError) as info:
        serde.events.decode(data, "t")
    assert "unknown event type" in info.value.reason
