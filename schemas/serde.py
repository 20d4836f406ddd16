"""Avro in the Confluent wire format (0x00, 4-byte schema id, Avro binary) through the registry.

Subjects follow the topic-name strategy (``<topic>-value``). The serializers are confluent-kafka's
own, so any client with a Confluent Avro serde reads and writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.avro import schema_str
from schemas.delivery import DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.webhook import Webhook


class AvroModel(Protocol):
    def to_avro(self) -> dict[str, Any]: ...

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self: ...


M = TypeVar("M", bound=AvroModel)

MAGIC_BYTE = 0


class DecodeError(ValueError):
    """A record that cannot be decoded; ``reason`` says why (for the dead-letter headers)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def registry_client(url: str) -> SchemaRegistryClient:
    """A registry client; ``mock://<name>`` gives confluent-kafka's in-process mock registry."""
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": url})
    return client


class AvroCodec(Generic[M]):
    """Encode/decode one model as Confluent-framed Avro, registering its schema on first use."""

    def __init__(self, client: SchemaRegistryClient, model: type[M], schema_name: str) -> None:
        self._model = model
        self._serializer = AvroSerializer(
            client,
            schema_str(schema_name),
            to_dict=lambda obj, _ctx: obj.to_avro(),
            conf={"auto.register.schemas": True, "normalize.schemas": False},
        )
        self._deserializer = AvroDeserializer(
            client,
            schema_str(schema_name),
            from_dict=lambda record, _ctx: record,
        )

    def encode(self, obj: M, topic: str) -> bytes:
        """``obj`` as wire-format bytes for ``topic``'s value subject."""
        data: bytes = self._serializer(obj, SerializationContext(topic, MessageField.VALUE))
        return data

    def decode(self, data: bytes | None, topic: str) -> M:
        """The model in ``data``; DecodeError with the reason if the bytes are not one."""
        if not data:
            raise DecodeError("empty value (tombstone or null) where a record was expected")
        if data[0] != MAGIC_BYTE or len(data) < 5:
            raise DecodeError("not Confluent wire format (magic byte 0 and schema id expected)")
        try:
            record = self._deserializer(data, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:
            raise DecodeError(f"Avro decoding failed: {type(exc).__name__}: {exc}") from None
        try:
            return self._model.from_avro(record)
        except ValueError as exc:
            raise DecodeError(f"record breaks the contract: {exc}") from None


class Serde:
    """The codecs of every model in the contract, sharing one registry client."""

    def __init__(self, registry_url: str) -> None:
        client = registry_client(registry_url)
        self.client = client
        self.events: AvroCodec[Event] = AvroCodec(client, Event, "Event")
        self.webhooks: AvroCodec[Webhook] = AvroCodec(client, Webhook, "Webhook")
        self.tasks: AvroCodec[DeliveryTask] = AvroCodec(client, DeliveryTask, "DeliveryTask")
        self.deliveries: AvroCodec[WebhookDelivery] = AvroCodec(
            client, WebhookDelivery, "WebhookDelivery"
        )
