"""What a stream processor writes against: decoded event streams in, confirmed records out.

- :class:`EventsTopic` (``ctx.events(types=..., tenants=...)``): the event topics that can carry
  the wanted types, decoded by the ``cpevents-avro`` codec. Its streams (:class:`ProcessorStream`,
  the app's stream class) yield :class:`~schemas.event.Event` objects of the wanted types and
  tenants only. An undecodable record is dead-lettered to ``events.dlt`` (the project's
  dead-letter headers, ``dlt-source: streams.processor:<agent>`` and ``dlt-processor: <agent>``)
  and Kafka's acknowledgement is awaited before the record is acked, so it is never lost and
  never crashes the agent. A record the registry could not be asked about is decoded again with
  a backoff instead (the partition stalls, as the router's does).
- :class:`Output` (``ctx.output(name, schema=...)``): a processor's own topic
  (``<prefix><name>``, created with the configured partitions and replication) whose ``send``
  encodes with the registry (the schema registered under ``<topic>-value``, or Event) and
  returns once Kafka acknowledged the record, through the router's writer (BatchWriter).
- :class:`MemorySink` replaces Kafka for unit tests (``streams.testing``).

The router's path is untouched: it reads raw batches from the consumer, not a Faust stream
(``streams.raw_batches``), so a worker without processors does no more per record than before;
an event topic a processor reads reaches its stream as Faust messages as well.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

import fastavro
import faust
from confluent_kafka import Message, Producer
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.validation import ValidationError, validate
from faust.exceptions import Skip
from faust.types import EventT

from plumbing.kafka.clients import producer_config
from plumbing.kafka.deadletter import dead_letter_headers
from plumbing.kafka.produce import Record
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import SUBSYSTEM_OF
from schemas.serde import Serde
from schemas.topics import Topics, TopicSpec
from schemas.wire import header
from streams.codec import EventCodec, Undecodable, decode_event
from streams.faust_record import FaustRecord
from streams.matching import Subscription
from streams.writer import BatchWriter

log = logging.getLogger(__name__)

#: The ``dlt-source`` of a processor's dead letters is this prefix and the agent's name.
DLT_SOURCE_PREFIX = "streams.processor:"
OUTPUT_ROLE = "processor-output"

AvroSchemaArg = Mapping[str, Any] | str | Path
Key = str | bytes | None


# -- which events a processor sees ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Event types (patterns as webhooks use them: ``deploy.*``, exact types, ``*``; none means
    all) and tenants (none means all) a processor wants."""

    types: Subscription
    tenants: frozenset[str]

    @classmethod
    def compile(cls, types: Iterable[str] = (), tenants: Iterable[str] = ()) -> EventFilter:
        """Raises ValueError naming ``types`` when a pattern matches no type of the catalog
        (a typo would otherwise silently yield nothing)."""
        patterns = tuple(types)
        for pattern in patterns:
            one = Subscription.compile([pattern])
            if not any(one.matches(event_type) for event_type in SUBSYSTEM_OF):
                raise ValueError(f"types: {pattern!r} matches no event type of the catalog")
        return cls(Subscription.compile(patterns), frozenset(tenants))

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is wanted."""
        if self.tenants and event.tenant_id not in self.tenants:
            return False
        return self.types.matches(event.type)

    def topics(self, topics: Topics) -> list[str]:
        """The event topics that can carry a wanted type (the others are not subscribed)."""
        subsystems = {s for t, s in SUBSYSTEM_OF.items() if self.types.matches(t)}
        return [topics.events(s) for s in sorted(subsystems)]


# -- where records go ------------------------------------------------------------------------


class OutputRefused(ValueError):
    """Kafka refused a processor's record (too large for the topic); names topic and reason."""


class Sink(Protocol):
    """Where a processor's records (outputs and dead letters) are written."""

    def declare(self, topic: str) -> None:
        """Make sure ``topic`` exists (called when an output is declared, before running)."""

    async def write(self, records: Sequence[Record]) -> None:
        """Return once every record of ``records`` is stored; OutputRefused if one cannot be."""


class KafkaSink:
    """Kafka through the router's writer: acks=all, idempotent, retried until acknowledged.

    One producer for the processors of a worker; writes are serialized (a BatchWriter serves
    one batch at a time), each one returns after Kafka's acknowledgement.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._writer: BatchWriter | None = None
        self._lock: asyncio.Lock | None = None

    def declare(self, topic: str) -> None:
        spec = TopicSpec(topic, OUTPUT_ROLE, self._settings.partitions, {})
        ensure_topics(self._settings, [spec])

    async def write(self, records: Sequence[Record]) -> None:
        if self._writer is None or self._lock is None:
            # Created on first use, in the worker's event loop: no producer without processors.
            overrides: dict[str, Any] = {"client.id": "processors"}
            config = producer_config(self._settings, **overrides)
            self._writer = BatchWriter(Producer(config))
            self._lock = asyncio.Lock()
        async with self._lock:
            refused = await self._writer.write(records)
        if refused:
            first = refused[0]
            raise OutputRefused(f"{first.record.topic}: {first.reason}")

    def close(self) -> None:
        """Flush what is queued (nothing is, between writes)."""
        if self._writer is not None:
            self._writer.close()


@dataclass
class MemorySink:
    """Records kept in memory instead of written to Kafka (unit tests)."""

    records: list[Record] = field(default_factory=list)
    declared: set[str] = field(default_factory=set)

    def declare(self, topic: str) -> None:
        self.declared.add(topic)

    async def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def on(self, topic: str) -> list[Record]:
        """The records written to ``topic``, in order."""
        return [r for r in self.records if r.topic == topic]


# -- decoding, filtering and dead-lettering in a processor's stream -----------------------------


@dataclass
class ProcessorIO:
    """What the processors of one worker share: the serde, the codec and the sink."""

    settings: Settings
    serde: Serde
    sink: Sink
    codec: EventCodec

    async def dead_letter(self, message: Any, reason: str, processor: str) -> None:
        """Park ``message`` (a Faust message) in ``events.dlt``; returns once it is stored."""
        log.warning(
            "processor %s dead-letters %s[%s]@%s: %s",
            processor,
            message.topic,
            message.partition,
            message.offset,
            reason,
        )
        coordinates = cast(Message, FaustRecord(message))
        headers = dead_letter_headers(
            coordinates,
            reason,
            DLT_SOURCE_PREFIX + processor,
            time.time_ns() // 1_000_000,
            {"processor": processor},
        )
        record = Record(self.settings.topics.events_dlt, message.key, message.value, headers)
        await self.sink.write([record])

    async def decode_retrying(self, value: Undecodable) -> Event | Undecodable:
        """Decode again until the registry answers: an Event, or why the record is bad."""
        delay = 0.2
        while value.retry:
            # Stall rather than dead-letter good events during a registry outage.
            log.warning("%s; decoding again in %.1fs", value.reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            decoded = decode_event(self.serde, value.data)
            if isinstance(decoded, Event):
                return decoded
            value = decoded
        return value


@dataclass(frozen=True)
class Admission:
    """The step every value of a processor's stream passes first: decode, filter, dead-letter."""

    filter: EventFilter
    io: ProcessorIO
    #: The processor's name when the stream has no agent to name it (test channels).
    name: str = "processor"

    async def admit(self, value: Any, event: EventT[Any] | None, processor: str) -> Event:
        """``value`` as an Event; Skip (the record is acked) when filtered out or parked."""
        decoded = value if isinstance(value, Event) else await self._decoded(value)
        if isinstance(decoded, Undecodable):
            if event is None:  # not from a topic: nothing to park, tell the caller
                raise ValueError(f"value: not an event ({decoded.reason})")
            await self.io.dead_letter(event.message, decoded.reason, processor)
            raise Skip()
        if not self.filter.matches(decoded):
            raise Skip()
        return decoded

    async def _decoded(self, value: Any) -> Event | Undecodable:
        if isinstance(value, Undecodable):
            return await self.io.decode_retrying(value) if value.retry else value
        if value is None or isinstance(value, bytes):  # a tombstone; raw bytes (test channels)
            decoded = decode_event(self.io.serde, value)
            if isinstance(decoded, Undecodable) and decoded.retry:
                return await self.io.decode_retrying(decoded)
            return decoded
        return Undecodable(None, f"a {type(value).__name__} where an event record was expected")


class _Admit:
    """``Admission.admit`` bound to one stream (its agent's name and current event)."""

    def __init__(self, admission: Admission, stream: faust.Stream[Any]) -> None:
        self._admission = admission
        self._stream = stream
        self._name = stream.prefix or admission.name

    async def __call__(self, value: Any) -> Event:
        current: EventT[Any] | None = self._stream.current_event
        return await self._admission.admit(value, current, self._name)


class EventsTopic(faust.Topic):
    """Event topics decoded to Events, with the admission step its streams apply."""

    def __init__(self, *args: Any, admission: Admission | None = None, **kwargs: Any) -> None:
        self.cpevents_admission = admission
        super().__init__(*args, **kwargs)

    def _clone_args(self) -> Mapping[str, Any]:
        return {**super()._clone_args(), "admission": self.cpevents_admission}


class MemoryEventsChannel(faust.Channel[Event]):
    """An in-memory channel with an admission step (``agent.test_context(channel=...)``)."""

    def __init__(self, *args: Any, admission: Admission | None = None, **kwargs: Any) -> None:
        self.cpevents_admission = admission
        super().__init__(*args, **kwargs)

    def _clone_args(self) -> Mapping[str, Any]:
        return {**super()._clone_args(), "admission": self.cpevents_admission}


class ProcessorStream(faust.Stream[Any]):
    """The app's stream class: over an :class:`EventsTopic`, admission comes first.

    Streams over other channels get nothing added: the check runs once, here.
    """

    def __init__(self, channel: Any, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        admission = getattr(channel, "cpevents_admission", None)
        # A stream's clones (take, group_by...) inherit the step with the processors.
        if admission is not None and not any(isinstance(p, _Admit) for p in self._processors):
            self._processors.insert(0, _Admit(admission, self))


def events_topic(
    app: faust.App,
    io: ProcessorIO,
    types: Iterable[str] = (),
    tenants: Iterable[str] = (),
) -> EventsTopic:
    """An :class:`EventsTopic` over the event topics that can carry ``types``."""
    wanted = EventFilter.compile(types, tenants)
    return EventsTopic(
        app,
        topics=wanted.topics(io.settings.topics),
        key_type=bytes,
        key_serializer="raw",
        # No value type: every processor's topic shares the decoded Event of a record (Faust
        # decodes once per key/value type pair); the router reads raw batches, apart.
        value_serializer=io.codec,
        admission=Admission(wanted, io),
    )


def memory_channel(app: faust.App, topic: EventsTopic, name: str) -> MemoryEventsChannel:
    """An in-memory channel admitting what ``topic`` admits, naming processor ``name``."""
    admission = topic.cpevents_admission
    named = replace(admission, name=name) if admission is not None else None
    return MemoryEventsChannel(app, admission=named)


# -- a processor's own records ---------------------------------------------------------------


def load_schema(schema: AvroSchemaArg) -> dict[str, Any]:
    """An Avro schema from a dict, its JSON text or a ``.avsc`` file."""
    if isinstance(schema, Path):
        schema = schema.read_text()
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"schema: not JSON ({exc})") from None
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        raise ValueError("schema: must be an Avro record schema")
    return dict(schema)


class _RecordEncoder:
    """Dicts as Confluent-framed Avro of one schema, registered under ``<topic>-value``."""

    def __init__(self, serde: Serde, topic: str, schema: Mapping[str, Any]) -> None:
        self._serde = serde
        self._topic = topic
        self._text = json.dumps(schema, sort_keys=True)
        self._name = str(schema.get("name", "record"))
        try:
            self._parsed = fastavro.parse_schema(dict(schema))
        except Exception as exc:
            raise ValueError(f"schema: not a valid Avro schema ({exc})") from None
        self._header: bytes | None = None

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, Mapping):
            raise TypeError(f"value: a dict of {self._name}'s fields, got {type(value).__name__}")
        try:
            validate(value, self._parsed, raise_errors=True)
        except ValidationError as exc:
            # fastavro's message names each bad field and what it expected.
            problems = "; ".join(str(e) for e in exc.errors)
            raise ValueError(f"value: does not match {self._name}: {problems}") from None
        if self._header is None:
            schema_id = self._serde.client.register_schema(
                f"{self._topic}-value", Schema(self._text, "AVRO")
            )
            self._header = header(int(schema_id))
        buffer = io.BytesIO()
        buffer.write(self._header)
        fastavro.schemaless_writer(buffer, self._parsed, dict(value))
        return buffer.getvalue()


class Output:
    """A processor's output topic: ``await send(key, value)`` returns once Kafka has it.

    With a ``schema``, values are dicts of that Avro record (checked, an error names the bad
    field); without one, they are catalog :class:`~schemas.event.Event` objects. Keys are text
    (UTF-8) or bytes: consumers in any language read them as strings.
    """

    def __init__(self, topic: str, io: ProcessorIO, schema: AvroSchemaArg | None = None) -> None:
        self.topic = topic
        self._io = io
        self._encoder = (
            None if schema is None else _RecordEncoder(io.serde, topic, load_schema(schema))
        )

    def encode(self, value: Any) -> bytes:
        """``value`` as the wire-format bytes ``send`` writes (registers the schema once)."""
        if self._encoder is not None:
            return self._encoder.encode(value)
        if not isinstance(value, Event):
            raise TypeError(f"value: {self.topic} carries Events, got {type(value).__name__}")
        return self._io.serde.events.encode(value, self.topic)

    async def send(self, key: Key, value: Any, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Write one record; return once Kafka acknowledged it."""
        await self.send_many([(key, value)], headers)

    async def send_many(
        self, items: Iterable[tuple[Key, Any]], headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Write several records (one acknowledgement wait for all); in order per key."""
        records = [
            Record(self.topic, _key_bytes(key), await self._encoded(value), headers)
            for key, value in items
        ]
        await self._io.sink.write(records)

    async def _encoded(self, value: Any) -> bytes:
        delay = 0.2
        while True:
            try:
                return self.encode(value)
            except (ValueError, TypeError):
                raise  # the value is wrong: the processor's bug, not an outage
            except SchemaRegistryError as exc:
                status = exc.http_status_code
                if status is not None and 400 <= status < 500:
                    # Refused (incompatible schema, no permission): waiting will not help.
                    raise
                failure: Exception = exc
            except Exception as exc:
                failure = exc
            # Registering the schema failed: an unreachable registry is waited out.
            log.warning("%s: schema registry unavailable (%s); retrying", self.topic, failure)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _key_bytes(key: Key) -> bytes | None:
    return key.encode() if isinstance(key, str) else key
