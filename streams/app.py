"""The Faust app every streams worker runs: the router plus any users' processors.

Users add their own agents to the same app (same consumer group, same worker processes) with a
processor module: a module exposing ``install(ctx: StreamsContext) -> None`` that declares agents,
tables and web views on ``ctx.app``, usually over ``ctx.events(types=...)`` (decoded Events) and
writing to ``ctx.output(name, schema=...)`` (see ``streams.processor_api``). Pass it to the worker
with ``cpevents worker streams --processor my_package.my_module``; ``streams/processors/`` holds
examples, ``streams.testing`` runs one without Kafka.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT
from prometheus_client import CONTENT_TYPE_LATEST

from plumbing.kafka.clients import bootstrap
from plumbing.kafka.lag import watch_lag
from plumbing.metrics import scrape
from plumbing.settings import Settings
from schemas.serde import Serde
from streams.broker_auth import faust_broker_options
from streams.codec import EventCodec, register_codec
from streams.commits import CommitSafeApp
from streams.processor_api import (
    AvroSchemaArg,
    KafkaSink,
    Output,
    ProcessorIO,
    ProcessorStream,
    Sink,
)
from streams.processor_api import events_topic as processor_events_topic
from streams.webhook_config import WebhookConfig


@dataclass(frozen=True)
class WorkerOptions:
    """Knobs of one worker process that are not platform settings."""

    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 1000
    # Seconds a partial batch waits for more records: the latency floor under light traffic.
    # Under load a backlog fills batches at once, so a short wait costs little throughput.
    batch_within: float = 0.005
    commit_interval: float = 1.0
    session_timeout: float = 30.0
    heartbeat_interval: float = 3.0
    processors: tuple[str, ...] = ()
    datadir: Path | None = None
    extra_conf: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamsContext:
    """What an agent needs: the app, settings, the serde and the live webhook configs."""

    settings: Settings
    options: WorkerOptions
    serde: Serde
    webhooks: WebhookConfig
    app: faust.App
    events_topic: faust.TopicT  # the five subsystem topics, raw bytes (decode with ``serde``)
    #: Where processors' outputs and dead letters go: Kafka unless a test passes a MemorySink.
    sink: Sink | None = None
    _io: ProcessorIO | None = field(default=None, init=False, repr=False)
    _codec: EventCodec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Registered up front: a topic naming the codec before any ctx.events() call would
        # otherwise fail to decode every record (and Faust throws that into the router).
        self._codec = register_codec(self.serde, self.settings.topics)

    def processor_io(self) -> ProcessorIO:
        """The codec and sink shared by this worker's processors (a Kafka producer only once
        a processor writes)."""
        if self._io is None:
            sink = self.sink if self.sink is not None else KafkaSink(self.settings)
            self._io = ProcessorIO(self.settings, self.serde, sink, self._codec)
        return self._io

    def events(self, types: Iterable[str] = (), tenants: Iterable[str] = ()) -> faust.TopicT:
        """The event topics carrying ``types`` (``deploy.*``, ``health.failed``; none: all) as
        a topic of decoded Events of those types and ``tenants`` (none: all) for an agent.
        Undecodable records are dead-lettered (see ``streams.processor_api``)."""
        return processor_events_topic(self.app, self.processor_io(), types, tenants)

    def output(self, name: str, schema: AvroSchemaArg | None = None) -> Output:
        """Topic ``<prefix><name>`` (created now) for this processor's records: with ``schema``
        (an Avro record schema: dict, JSON or ``.avsc`` path) values are dicts of it, without
        one they are Events. ``await out.send(key, value)`` returns once Kafka has it."""
        io = self.processor_io()
        topic = f"{self.settings.topic_prefix}{name}"
        io.sink.declare(topic)
        return Output(topic, io, schema)


class LeanMonitor(Monitor):
    """Faust's monitor without its per-message timing bookkeeping.

    The default monitor timestamps and counts every message and event in four hooks; at the
    router's rates that is a measurable share of each event's cost, and nothing reads it.
    Commit, rebalance and table statistics are kept.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[Any, Any] | None:
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT[Any],
        event: EventT[Any],
        state: dict[Any, Any] | None = None,
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


def app_id(settings: Settings) -> str:
    """The Faust app id, which is also the consumer group: one per topic prefix."""
    return f"{settings.topic_prefix}streams"


def create_app(settings: Settings, options: WorkerOptions) -> faust.App:
    """A Faust app configured for this platform (aiokafka driver, in-memory tables).

    Kafka security comes from the settings, as for every other client; a
    ``CPEVENTS_KAFKA_CONFIG`` property aiokafka has no equivalent for raises
    ``streams.broker_auth.UnsupportedKafkaProperty`` (a ValueError).
    """
    datadir = options.datadir or Path(tempfile.mkdtemp(prefix="cpevents-streams-"))
    conf: dict[str, Any] = {
        # aiokafka is the driver Faust's tables are safe with (not the confluent driver).
        "broker": [f"kafka://{server}" for server in bootstrap(settings).split(",")],
        "store": "memory://",
        "datadir": str(datadir),
        "autodiscover": False,
        "topic_partitions": settings.partitions,
        # build_worker resolves "auto" against the cluster first; an app built without it (the
        # processor test harness) declares no topic.
        "topic_replication_factor": (
            1 if settings.replication_factor == "auto" else settings.replication_factor
        ),
        "topic_allow_declare": True,  # Faust's own topics (assignor leader, changelogs)
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "processing_guarantee": "at_least_once",
        "broker_commit_interval": options.commit_interval,
        "broker_session_timeout": options.session_timeout,
        "broker_heartbeat_interval": options.heartbeat_interval,
        "web_enabled": True,
        "web_host": options.web_host,
        "web_port": options.web_port,
        "web_bind": options.web_host,
        "canonical_url": f"http://{options.web_host}:{options.web_port}",
        # Adds processors' admission step to their streams only (streams.processor_api).
        "Stream": ProcessorStream,
        **faust_broker_options(settings),
    }
    conf.update(options.extra_conf)
    app = CommitSafeApp(app_id(settings), monitor=LeanMonitor(), **conf)
    install_metrics(app, settings)
    return app


def install_metrics(app: faust.App, settings: Settings) -> None:
    """``GET /metrics`` on the worker's web port: the process's metrics (router counters, the
    consumer lag of the streams group on the event topics)."""
    watch_lag(settings, app_id(settings), settings.topics.all_events)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # Collected off the loop: the lag collector waits on Kafka.
        body = await asyncio.to_thread(scrape)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def events_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    """The five subsystem event topics as one raw-bytes Faust topic."""
    return app.topic(
        *settings.topics.all_events,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


Processor = Callable[[StreamsContext], None]


def load_processor(path: str) -> Processor:
    """The ``install`` function of processor module ``path`` (``package.module``)."""
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise ValueError(f"processor {path!r}: cannot import it ({exc})") from None
    install = getattr(module, "install", None)
    if not callable(install):
        raise ValueError(f"processor {path!r}: has no install(ctx) function")
    processor: Processor = install
    return processor
