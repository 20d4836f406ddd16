"""Our registry with confluent-kafka's own SchemaRegistryClient, AvroSerializer and
AvroDeserializer, through a real broker."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from plumbing.kafka.clients import producer_config
from plumbing.settings import Settings
from registry.canonical import parse_schema
from schemas.avsc import schema_names, schema_str
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.ids import new_id
from schemas.samples import sample_events
from schemas.serde import Serde
from schemas.webhook import EncryptedSecret, Webhook
from tests.kafka_helpers import read_all


def _models() -> list[tuple[str, Any]]:
    event = sample_events()[0]
    task = DeliveryTask.for_event(event, new_id("hook"), "https://example.com/hook")
    webhook = Webhook(
        new_id("hook"),
        event.tenant_id,
        "https://example.com",
        ("instance.*",),
        True,
        (EncryptedSecret("gAAAA-token", event.timestamp),),
    )
    delivery = WebhookDelivery(
        task.id,
        task.webhook_id,
        event.id,
        event.tenant_id,
        DeliveryStatus.RETRYING,
        2,
        503,
        event.timestamp,
        "HTTP 503",
        12.5,
    )
    return [("events", e) for e in sample_events()] + [
        ("tasks", task),
        ("webhooks", webhook),
        ("deliveries", delivery),
    ]


def test_every_schema_round_trips_through_kafka_and_the_registry(
    settings: Settings, registry_url: str
) -> None:
    writer, reader = Serde(registry_url), Serde(registry_url)  # separate client caches
    topics = settings.topics
    topic_of = {
        "events": topics.for_event_type(sample_events()[0].type),
        "tasks": topics.deliveries,
        "webhooks": topics.webhooks,
        "deliveries": topics.webhook_deliveries,
    }
    models = [(codec, model) for codec, model in _models() if codec != "events"]
    models.append(("events", sample_events()[0]))
    producer = Producer(producer_config(settings))
    for codec, model in models:
        topic = topic_of[codec]
        producer.produce(topic, key=b"k", value=getattr(writer, codec).encode(model, topic))
    assert producer.flush(15) == 0

    records = read_all(settings, sorted(set(topic_of.values())), len(models))
    codec_of = {topic: codec for codec, topic in topic_of.items()}
    decoded = {}
    for record in records:
        topic = record.topic() or ""
        data = record.value() or b""
        assert data[0] == 0  # Confluent wire format, id from our registry
        schema_id = struct.unpack(">I", data[1:5])[0]
        assert json.loads(reader.client.get_schema(schema_id).schema_str or "")["name"]
        decoded[codec_of[topic]] = getattr(reader, codec_of[topic]).decode(data, topic)
    assert decoded == dict(models)


def test_every_contract_schema_registers_and_resolves(registry_url: str) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    other = SchemaRegistryClient({"url": registry_url})
    for name in schema_names():
        subject = f"{name}-{uuid.uuid4().hex[:6]}-value"
        schema_id = client.register_schema(subject, Schema(schema_str(name), "AVRO"))
        fetched = other.get_schema(schema_id)
        assert parse_schema(fetched.schema_str).key == parse_schema(schema_str(name)).key
        latest = other.get_latest_version(subject)
        assert (latest.schema_id, latest.version) == (schema_id, 1)
        assert other.lookup_schema(subject, Schema(schema_str(name), "AVRO")).schema_id == schema_id
        # The same schema under another subject keeps its id.
        assert client.register_schema(f"{subject}-copy", Schema(schema_str(name))) == schema_id


RECORD_V1 = {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "string"}]}


def _with(field: dict[str, Any]) -> str:
    return json.dumps({**RECORD_V1, "fields": [*RECORD_V1["fields"], field]})


def test_incompatible_change_409_compatible_change_new_version(registry_url: str) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = f"thing-{uuid.uuid4().hex[:8]}-value"
    first = client.register_schema(subject, Schema(json.dumps(RECORD_V1), "AVRO"))
    assert client.get_compatibility() == "BACKWARD"

    required = Schema(_with({"name": "b", "type": "int"}), "AVRO")
    assert client.test_compatibility(subject, required) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, required)
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert client.get_versions(subject) == [1]

    optional = Schema(_with({"name": "b", "type": ["null", "int"], "default": None}), "AVRO")
    assert client.test_compatibility(subject, optional) is True
    second = client.register_schema(subject, optional)
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    assert client.get_version(subject, 2).schema_id == second

    # A subject-level NONE lets the incompatible change through, as a third version.
    answer: Any = client.set_compatibility(subject, "NONE")  # the client's hint says str
    assert answer == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    third = client.register_schema(subject, required)
    assert client.get_versions(subject) == [1, 2, 3]
    assert client.get_schema_versions(third)[0].version == 3


def test_soft_and_permanent_deletes(registry_url: str) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = f"gone-{uuid.uuid4().hex[:8]}-value"
    schema_id = client.register_schema(subject, Schema(json.dumps(RECORD_V1), "AVRO"))
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_versions(subject)
    assert missing.value.error_code == 40401
    assert client.delete_subject(subject, permanent=True) == [1]
    assert subject not in client.get_subjects(deleted=True)
    # Data written with the id stays readable.
    assert client.get_schema(schema_id).schema_str
