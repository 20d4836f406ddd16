"""Avro in the Confluent wire format (0x00, 4-byte schema id, Avro binary) through the registry.

Subjects follow the topic-name strategy (``<topic>-value``). Schemas are registered and looked up
with confluent-kafka's ``SchemaRegistryClient``; the Avro binary is written and read by fastavro,
the same library confluent-kafka's own ``AvroSerializer`` uses. We call fastavro directly because
the confluent (de)serializer spends about three times the encoding cost per record on
bookkeeping our schemas do not need (data-contract rules, references, association lookups), and
every component decodes every record. A unit test keeps the bytes identical to confluent's.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, Self, TypeVar

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import gojson
from schemas.attempt_records import webhook_delivery_avro
from schemas.avsc import schema_dict, schema_str
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.timestamps import to_epoch_micros
from schemas.transcode import DeliveryTaskJson, EventJson, delivery_task_json, event_json
from schemas.webhook import Webhook
from schemas.wire import HEADER_SIZE as HEADER_SIZE  # importable from here too
from schemas.wire import (
    WireFormatError,
    encode_long,
    encode_string,
    header,
    read_long,
    read_string,
    schema_id_of,
)


class AvroModel(Protocol):
    def to_avro(self) -> dict[str, Any]: ...

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self: ...


M = TypeVar("M", bound=AvroModel)


class DecodeError(ValueError):
    """A record that cannot be decoded; ``reason`` says why (for the dead-letter headers).

    Only raised for problems with the record itself. A registry that cannot be reached raises
    the registry client's own error instead, so callers retry rather than dead-letter.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def registry_client(registry: str | Mapping[str, Any]) -> SchemaRegistryClient:
    """A registry client for a URL, or for a whole ``SchemaRegistryClient`` configuration (URL,
    basic auth, CA: what secured registries need); ``mock://<name>`` gives confluent-kafka's
    in-process mock registry."""
    config = {"url": registry} if isinstance(registry, str) else dict(registry)
    client: SchemaRegistryClient = SchemaRegistryClient.new_client(config)
    return client


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


# -- a fast reader for flat records -------------------------------------------------------------
#
# fastavro.schemaless_reader costs ~5 us per call on a small record, mostly per-call set-up
# (schema checks, a stream object, options), and replay and the router decode every record.
# Records whose fields are only strings, nullable strings and longs (plain or timestamp-micros),
# like Event, are read here in one pass over the bytes instead. It produces exactly what fastavro
# produces (a unit test compares both on generated and corrupted records) and is only used when
# the writer schema is our own schema, so no resolution is involved.

# The string kinds first: the reader tells them from the longs with one comparison.
_STRING, _OPTIONAL_STRING, _LONG, _TIMESTAMP_MICROS = range(4)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # what fastavro adds timestamp-micros to


def _field_kind(avro_type: Any) -> int | None:
    if avro_type == ["null", "string"]:
        return _OPTIONAL_STRING
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if avro_type.get("type") == "long" and logical == "timestamp-micros":
            return _TIMESTAMP_MICROS
        if logical is not None:
            return None
        avro_type = avro_type.get("type")
    return {"string": _STRING, "long": _LONG}.get(avro_type) if isinstance(avro_type, str) else None


def _flat_layout(schema: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """The field names and kinds of a flat record schema; None if it is not one."""
    if schema.get("type") != "record":
        return None
    names: list[str] = []
    kinds: list[int] = []
    for field in schema.get("fields", ()):
        kind = _field_kind(field.get("type"))
        if kind is None:
            return None
        names.append(field["name"])
        kinds.append(kind)
    return tuple(names), tuple(kinds)


def flat_record_reader(schema: Mapping[str, Any]) -> Callable[[bytes, int], dict[str, Any]] | None:
    """A reader of ``schema``'s records from ``data[start:]``, or None if it is not flat.

    The reader raises ValueError (WireFormatError and UnicodeDecodeError among them; IndexError
    when the data ends where a union index should be) for bytes that are not one record: bad
    lengths, union indexes or UTF-8, truncated varints or varints over 10 bytes, trailing bytes.
    Longs are wrapped to 64 bits like fastavro's C reader (see schemas/wire.py).
    """
    flat = _flat_layout(schema)
    if flat is None:
        return None
    keys, layout = flat

    def read(data: bytes, start: int) -> dict[str, Any]:
        pos = start
        values: list[Any] = []
        append = values.append
        for kind in layout:
            if kind == _OPTIONAL_STRING:
                branch = data[pos]
                pos += 1
                if branch == 0:
                    append(None)
                    continue
                if branch != 2:
                    raise ValueError(f"union index {branch} out of range")
            if kind <= _OPTIONAL_STRING:  # a string, or the string branch of the union
                text, pos = read_string(data, pos)
                append(text)
                continue
            number, pos = read_long(data, pos)
            append(number if kind == _LONG else _EPOCH + timedelta(microseconds=number))
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} trailing bytes")
        return dict(zip(keys, values, strict=True))

    return read


class AvroCodec(Generic[M]):
    """Encode/decode one model as Confluent-framed Avro, registering its schema on first use.

    Records written with another (compatible) version of the schema are resolved to ours.
    Thread-safe: the caches only ever gain entries.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        model: type[M],
        schema_name: str,
        body_writer: Callable[[M], bytes] | None = None,
    ) -> None:
        self._client = client
        # Writes the Avro body of a model directly (hot records); fastavro otherwise.
        self._body_writer = body_writer
        self._model = model
        self._schema_text = schema_str(schema_name)
        self._reader_dict = schema_dict(schema_name)
        self._reader = fastavro.parse_schema(self._reader_dict)
        self._reader_canonical = _canonical(self._reader_dict)
        self._flat_reader = flat_record_reader(self._reader_dict)
        # schema ids written with exactly our schema, when it is flat (see flat_record_reader)
        self._flat_ids: set[int] = set()
        self._headers: dict[str, bytes] = {}  # topic -> wire header of our schema's id
        # schema id -> (writer schema, reader schema or None when no resolution is needed)
        self._writers: dict[int, tuple[Any, Any]] = {}
        # wire headers (magic byte + id) of the ids written with exactly our schema
        self._own_headers: set[bytes] = set()
        self._lock = threading.Lock()

    def schema_id(self, topic: str) -> int:
        """Our schema's id under ``<topic>-value`` (registered on first use)."""
        return schema_id_of(self._header(topic))

    def _header(self, topic: str) -> bytes:
        cached = self._headers.get(topic)
        if cached is None:
            with self._lock:
                schema_id = self._client.register_schema(
                    f"{topic}-value", Schema(self._schema_text, "AVRO")
                )
            cached = header(int(schema_id))
            self._headers[topic] = cached
        return cached

    def frame(self, body: bytes, topic: str) -> bytes:
        """An Avro body already written with our schema, as wire-format bytes for ``topic``."""
        return self._header(topic) + body

    def encode(self, obj: M, topic: str) -> bytes:
        """``obj`` as wire-format bytes for ``topic``'s value subject."""
        if self._body_writer is not None:
            return self._header(topic) + self._body_writer(obj)
        buffer = io.BytesIO()
        buffer.write(self._header(topic))
        fastavro.schemaless_writer(buffer, self._reader, obj.to_avro())
        return buffer.getvalue()

    def _writer_for(self, schema_id: int) -> tuple[Any, Any]:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        try:
            found = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(f"schema id {schema_id} is not in the registry") from None
            raise
        if found.schema_type not in (None, "AVRO") or found.schema_str is None:
            raise DecodeError(f"schema id {schema_id} is not an Avro schema")
        writer_dict = json.loads(found.schema_str)
        same = _canonical(writer_dict) == self._reader_canonical
        try:
            entry = (fastavro.parse_schema(writer_dict), None if same else self._reader)
        except Exception as exc:
            raise DecodeError(f"schema id {schema_id} cannot be parsed: {exc}") from None
        if same:
            self._own_headers.add(header(schema_id))
        if same and self._flat_reader is not None:
            self._flat_ids.add(schema_id)
        self._writers[schema_id] = entry
        return entry

    def written_with_our_schema(self, data: bytes) -> bool:
        """Whether ``data``, already decoded by this codec, was written with exactly our schema,
        so that its Avro body can be embedded as is in a record that nests this one."""
        return data[:HEADER_SIZE] in self._own_headers

    def decode(self, data: bytes | None, topic: str) -> M:
        """The model in ``data``; DecodeError with the reason if the bytes are not one."""
        del topic  # the schema id in the record decides; kept for symmetry with encode
        if not data:
            raise DecodeError("empty value (tombstone or null) where a record was expected")
        try:
            schema_id = schema_id_of(data)
        except WireFormatError:
            raise DecodeError(
                "not Confluent wire format (magic byte 0 and schema id expected)"
            ) from None
        if schema_id in self._flat_ids and self._flat_reader is not None:
            try:
                record = self._flat_reader(data, HEADER_SIZE)
            except (ValueError, IndexError, OverflowError) as exc:
                raise DecodeError(f"Avro decoding failed: {type(exc).__name__}: {exc}") from None
        else:
            record = self._read_with_fastavro(data, schema_id)
        try:
            return self._model.from_avro(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"record breaks the contract: {exc}") from None

    def _read_with_fastavro(self, data: bytes, schema_id: int) -> dict[str, Any]:
        writer, reader = self._writer_for(schema_id)
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except Exception as exc:
            raise DecodeError(f"Avro decoding failed: {type(exc).__name__}: {exc}") from None
        if stream.tell() != len(data):
            raise DecodeError(f"Avro decoding failed: {len(data) - stream.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise DecodeError("Avro decoding failed: not a record")
        return record


class Serde:
    """The codecs of every model in the contract, sharing one registry client."""

    def __init__(self, registry: str | Mapping[str, Any]) -> None:
        """``registry``: the registry's URL, or a ``SchemaRegistryClient`` configuration."""
        client = registry_client(registry)
        self.client = client
        self.events: AvroCodec[Event] = AvroCodec(client, Event, "Event", event_body)
        self.webhooks: AvroCodec[Webhook] = AvroCodec(client, Webhook, "Webhook")
        self.tasks: AvroCodec[DeliveryTask] = AvroCodec(client, DeliveryTask, "DeliveryTask")
        self.deliveries: AvroCodec[WebhookDelivery] = AvroCodec(
            client, WebhookDelivery, "WebhookDelivery", webhook_delivery_body
        )

    def attempt_record(
        self,
        topic: str,
        task: DeliveryTaskJson,
        status: DeliveryStatus,
        attempts: int,
        status_code: int,
        error: str | None,
        next_retry_micros: int | None,
        duration_ms: float,
        updated_at_micros: int,
    ) -> bytes:
        """The attempt record (a ``WebhookDelivery``) of ``task`` as wire-format bytes, written
        from its fields: what ``deliveries.encode`` gives for the same values, without building
        the model and its datetimes (the delivery worker writes one per attempt)."""
        body = webhook_delivery_avro(
            task.id,
            task.webhook_id,
            task.event.id,
            task.tenant_id,
            status,  # a StrEnum: its text is its value
            status_code,
            attempts,
            next_retry_micros,
            error,
            duration_ms,
            task.created_at_micros,
            updated_at_micros,
        )
        return self.deliveries.frame(body, topic)

    def event_json(self, data: bytes | None, topic: str) -> EventJson:
        """The Event record in ``data`` in Ctrl Plane's JSON form (what ``events.decode(data)
        .to_json()`` gives, and the same DecodeError), transcoded without building the Event
        when the record allows it (see schemas/transcode.py)."""
        if data and self.events.written_with_our_schema(data):
            fast = event_json(data, HEADER_SIZE)
            if fast is not None and fast.end == len(data):
                return fast
        return _event_json_of(self.events.decode(data, topic), len(data or b""))

    def task_json(self, data: bytes | None, topic: str) -> DeliveryTaskJson:
        """The DeliveryTask record in ``data`` with its event in Ctrl Plane's JSON form (the
        webhook body), transcoded where the record allows; the same DecodeError as
        ``tasks.decode``."""
        if data and self.tasks.written_with_our_schema(data):
            fast = delivery_task_json(data, HEADER_SIZE)
            if fast is not None and fast.end == len(data):
                return fast
        task = self.tasks.decode(data, topic)
        return DeliveryTaskJson(
            task.id,
            task.webhook_id,
            task.tenant_id,
            task.url,
            _event_json_of(task.event, 0),
            to_epoch_micros(task.created_at),
            len(data or b""),
        )


# Each catalog type's Avro string, written once: every published event carries one.
_TYPE_AVRO: dict[str, bytes] = {str(t): encode_string(str(t)) for t in EventType}
_NULL = b"\x00"  # the null branch of a ["null", "string"] union
_STRING_BRANCH = b"\x02"  # its string branch (index 1, zig-zag)


def event_body(event: Event) -> bytes:
    """The Avro body of an Event record (schemas/avro/event.avsc), written field by field.

    Byte-identical to fastavro's encoding of ``event.to_avro()`` (a unit test compares them)
    and about three times cheaper: every event ``KafkaBus`` and the gateway publish is encoded
    here. Its parts are joined once rather than appended to a growing buffer."""
    instance_id = event.instance_id
    actor_id = event.actor_id
    return b"".join(
        (
            encode_string(event.id),
            _TYPE_AVRO.get(event.type) or encode_string(str(event.type)),
            encode_string(event.tenant_id),
            _NULL if instance_id is None else _STRING_BRANCH + encode_string(instance_id),
            _NULL if actor_id is None else _STRING_BRANCH + encode_string(actor_id),
            encode_string(gojson.dumps(event.payload)),
            encode_long(to_epoch_micros(event.timestamp)),
        )
    )


def webhook_delivery_body(record: WebhookDelivery) -> bytes:
    """The Avro body of an attempt record, written directly (one per delivery attempt)."""
    return webhook_delivery_avro(
        record.id,
        record.webhook_id,
        record.event_id,
        record.tenant_id,
        str(record.status),
        record.status_code,
        record.attempts,
        None if record.next_retry is None else to_epoch_micros(record.next_retry),
        record.error,
        record.duration_ms,
        to_epoch_micros(record.created_at),
        to_epoch_micros(record.updated_at),
    )


def _event_json_of(event: Event, end: int) -> EventJson:
    return EventJson(
        event.to_json().encode(),
        event.id,
        str(event.type),
        event.tenant_id,
        event.instance_id,
        end,
        to_epoch_micros(event.timestamp),
    )
