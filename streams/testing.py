"""Unit-testing stream processors without Kafka: events in, tables, outputs and dead letters out.

::

    async with ProcessorTest("my_pkg.my_processor") as harness:
        await harness.send(Event.new("health.failed", "ten_a").with_instance(instance))
        assert harness.outputs("alerts.failure-streaks") == [(instance, {...})]
        assert harness.table("failure-streaks")["ten_a"] == {...}

Each agent over ``ctx.events(...)`` runs in Faust's ``agent.test_context()`` with an in-memory
channel. A record sent is encoded with an in-process registry (``mock://``), decoded by the
agent's own topic (the ``cpevents-avro`` codec), then admitted as on a worker: filtered by type
and tenant, dead-lettered if it cannot be decoded. ``ctx.output`` topics and ``events.dlt`` are
kept in memory (:class:`~streams.processor_api.MemorySink`). ``send`` returns once every agent
has finished with the record (it asked for the next one). Tables are Faust's in-memory tables.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, cast

import fastavro
import faust
from faust.types import Message

from plumbing.kafka.deadletter import DeadLetter, parse_dead_letter
from plumbing.kafka.produce import Record
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.wire import HEADER_SIZE, schema_id_of
from streams.app import Processor, StreamsContext, WorkerOptions, create_app, events_topic
from streams.app import load_processor as _load
from streams.processor_api import EventsTopic, MemorySink, memory_channel
from streams.webhook_config import WebhookConfig

SETTLE_TIMEOUT = 10.0


def harness_settings() -> Settings:
    """Settings for a harness: an in-process registry and a ``test.`` topic prefix."""
    return Settings(
        schema_registry_url=f"mock://{uuid.uuid4().hex}",
        topic_prefix="test.",
        bootstrap_servers="127.0.0.1:9",  # never contacted
    )


class ProcessorTest:
    """Runs processors (``install`` functions or module paths) in memory; see the module doc."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, *processors: Processor | str, settings: Settings | None = None) -> None:
        self.settings = settings or harness_settings()
        self.serde = serde_for(self.settings)
        self.sink = MemorySink()
        options = WorkerOptions(extra_conf={"web_enabled": False})
        self.app: faust.App = create_app(self.settings, options)
        self.ctx = StreamsContext(
            settings=self.settings,
            options=options,
            serde=self.serde,
            webhooks=WebhookConfig(self.settings, self.serde.webhooks),
            app=self.app,
            events_topic=events_topic(self.app, self.settings),
            sink=self.sink,
        )
        for processor in processors:
            install = _load(processor) if isinstance(processor, str) else processor
            install(self.ctx)
        self._stack = AsyncExitStack()
        self._agents: list[tuple[EventsTopic, Any]] = []
        self._offsets: dict[str, int] = {}

    async def __aenter__(self) -> ProcessorTest:
        for agent in self.app.agents.values():
            topic = agent.channel
            if not isinstance(topic, EventsTopic):
                continue
            channel = memory_channel(self.app, topic, agent.name)
            wrapper = await self._stack.enter_async_context(agent.test_context(channel=channel))
            self._agents.append((topic, wrapper))
        if not self._agents:
            raise ValueError("processors: none declared an agent over ctx.events(...)")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    # -- input ---------------------------------------------------------------------------------

    async def send(self, *events: Event) -> None:
        """Feed ``events``, in order, each as a record of its catalog topic keyed by tenant and
        timestamped with the event's time; return once the agents are done with them."""
        for event in events:
            topic = self.settings.topics.for_event_type(event.type)
            value = self.serde.events.encode(event, topic)
            await self.send_record(
                topic, value, event.tenant_id.encode(), event.timestamp.timestamp()
            )

    async def send_record(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Feed one record as read from ``topic`` (any bytes: a poison record too)."""
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        message = Message(
            topic=topic,
            partition=0,
            offset=offset,
            timestamp=time.time() if timestamp is None else timestamp,
            timestamp_type=0,
            headers=[],
            key=key,
            value=value,
            checksum=b"",
            serialized_key_size=len(key or b""),
            serialized_value_size=len(value or b""),
            generation_id=self.app.consumer_generation_id,
        )
        for source, wrapper in self._agents:
            if topic in source.topics:
                # Decoded by the agent's own topic: its codec, as on a worker.
                event = await source.decode(message, propagate=True)
                await wrapper.stream().channel.put(event)
        await self.settle()

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:  # noqa: ASYNC109
        """Wait until every agent asked for its next record (or raise what crashed it)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = False
            for _, wrapper in self._agents:
                if wrapper._crash_reason is not None:
                    raise wrapper._crash_reason
                stream = wrapper.stream()
                busy = busy or not stream.channel.queue.empty() or stream.current_event is not None
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents still busy after {timeout}s")
            await asyncio.sleep(0.001)

    # -- what came out ---------------------------------------------------------------------------

    def table(self, name: str) -> Any:
        """The Faust table ``name`` (read keys as the processor does: ``table[key]``)."""
        return self.app.tables[name]

    def records(self, topic: str) -> list[Record]:
        """The records written to ``topic`` (a full name), in order."""
        return self.sink.on(topic)

    def outputs(self, name: str) -> list[tuple[str | None, Any]]:
        """(key, value) of each record written to output ``name`` (as ``ctx.output(name)``),
        decoded with the registry: Events, or dicts of the output's own schema."""
        topic = f"{self.settings.topic_prefix}{name}"
        return [
            (None if r.key is None else r.key.decode(), self.decode(r.value))
            for r in self.records(topic)
        ]

    def decode(self, value: bytes | None) -> Any:
        """A wire-format value as a reader in another language sees it: the writer schema is
        fetched by the id in the record (an Event as an Event)."""
        if value is None:
            return None
        found = self.serde.client.get_schema(schema_id_of(value))
        schema = json.loads(cast(str, found.schema_str))
        if schema.get("name") == "Event":
            return self.serde.events.decode(value, "")
        stream = io.BytesIO(value[HEADER_SIZE:])
        return fastavro.schemaless_reader(stream, fastavro.parse_schema(schema), None)

    def dead_letters(self) -> list[DeadLetter]:
        """What was parked in ``events.dlt``, with the dead-letter headers read."""
        records: Sequence[Record] = self.records(self.settings.topics.events_dlt)
        return [parse_dead_letter([(k, _bytes(v)) for k, v in r.headers]) for r in records]


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""
