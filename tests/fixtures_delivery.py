"""Delivery test fixtures: scriptable local webhook receivers and helpers to feed the worker.

Register with ``pytest_plugins = ["tests.fixtures_delivery"]`` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from delivery.lanes import Job
from delivery.offsets import PartitionProgress
from delivery.retry_headers import FRESH
from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas import ids
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.secrets import SecretBox, generate_secret
from schemas.timestamps import utc_now
from schemas.transcode import DeliveryTaskJson, EventJson
from schemas.webhook import EncryptedSecret, Webhook
from tests.conftest import make_settings


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the handler started


@dataclass
class Receiver:
    """A real HTTP server on a free 127.0.0.1 port.

    Each path answers from its script (a queue of actions, then its default): an int is a
    status, ``"hang"`` waits until :meth:`release` (or shutdown), ``("status", {headers})``
    adds headers, e.g. ``(429, {"Retry-After": "1"})``. ``answer``, if set, chooses the action
    of every request instead (it may be async), e.g. by the event it carries.
    """

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    hanging: int = 0
    _scripts: dict[str, deque[object]] = field(default_factory=lambda: defaultdict(deque))
    _defaults: dict[str, object] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0
    answer: Callable[[Received], object] | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def script(self, path: str, actions: Iterable[object] = (), default: object = 200) -> str:
        """Set what ``path`` answers; returns its URL."""
        self._scripts[path] = deque(actions)
        self._defaults[path] = default
        return self.url(path)

    def release(self) -> None:
        """Let every hanging request answer 200."""
        self._release.set()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read(), time.time())
        self.requests.append(received)
        script = self._scripts[request.path]
        action = script.popleft() if script else self._defaults.get(request.path, 200)
        if self.answer is not None:
            action = self.answer(received)
            if inspect.isawaitable(action):
                action = await action
        if self.delay:
            await asyncio.sleep(self.delay)
        if action == "hang":
            self.hanging += 1
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
            return web.Response(status=200)
        headers: dict[str, str] = {}
        if isinstance(action, tuple):
            action, headers = action
        assert isinstance(action, int)
        return web.Response(status=action, headers=headers, text="receiver says hi")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A scriptable webhook receiver on 127.0.0.1 (free port), stopped after the test."""
    async with running_receiver() as recv:
        yield recv


def make_job(
    webhook: Webhook,
    n: int,
    *,
    headers: list[tuple[str, bytes]] | None = None,
    secrets: tuple[str, ...] = (),
) -> Job:
    """A job as the worker's lanes get it: the ``n``th task of ``webhook`` (offset ``n``), read
    from a record with ``headers``."""
    event_id = ids.new_id(ids.EVENT)
    event = EventJson(b'{"n":%d}' % n, event_id, "instance.created", webhook.tenant_id, None, 0)
    task = DeliveryTaskJson(
        ids.delivery_id(event_id, webhook.id),
        webhook.id,
        webhook.tenant_id,
        webhook.url,
        event,
        0,
        0,
    )
    message = Message(topic="t.deliveries", partition=0, offset=n, value=b"task", headers=headers)
    return Job(
        message, None, FRESH, PartitionProgress(), n, task=task, webhook=webhook, secrets=secrets
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def running_receiver(port: int = 0) -> AsyncIterator[Receiver]:
    """A scriptable webhook receiver on 127.0.0.1 (``port``, default a free one): another
    endpoint than the ``receiver`` fixture's."""
    recv = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    recv.base_url = f"http://127.0.0.1:{port}"
    try:
        yield recv
    finally:
        recv.release()
        await runner.cleanup()


def delivery_settings(kafka_bootstrap: str, registry_url: str, **overrides: object) -> Settings:
    """Test settings with loopback allowed, fast tiers, and the catalog's topics created."""
    values: dict[str, object] = {
        "delivery_allowed_networks": ("127.0.0.0/8",),
        "delivery_breaker_failures": 1000,
        "delivery_timeout": 3.0,
        "delivery_jitter": 0.2,
    }
    values.update(overrides)
    settings = make_settings(kafka_bootstrap, schema_registry_url=registry_url, **values)
    ensure_topics(settings)
    return settings


class Feeder:
    """Writes webhooks and delivery tasks the way the gateway and the router would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.serde = serde_for(settings)
        assert settings.secret_key is not None
        self.box = SecretBox(settings.secret_key.get_secret_value())
        self.producer = Producer(producer_config(settings))
        self.secrets: dict[str, str] = {}

    def webhook(self, url: str, tenant: str = "ten_test") -> Webhook:
        secret = generate_secret()
        webhook = Webhook(
            id=ids.new_id(ids.WEBHOOK),
            tenant_id=tenant,
            url=url,
            secrets=(EncryptedSecret(self.box.encrypt(secret), utc_now()),),
        )
        self.secrets[webhook.id] = secret
        topic = self.settings.topics.webhooks
        self.producer.produce(
            topic, key=webhook.id, value=self.serde.webhooks.encode(webhook, topic)
        )
        self._flush()
        return webhook

    def rotate(self, webhook: Webhook) -> Webhook:
        """Write the webhook's next version with a new signing secret (as the gateway's
        rotation does, without the overlap); the new version."""
        secret = generate_secret()
        rotated = webhook.updated(secrets=(EncryptedSecret(self.box.encrypt(secret), utc_now()),))
        self.secrets[webhook.id] = secret
        topic = self.settings.topics.webhooks
        self.producer.produce(
            topic, key=webhook.id, value=self.serde.webhooks.encode(rotated, topic)
        )
        self._flush()
        return rotated

    def tasks(
        self, webhook: Webhook, count: int = 1, partition: int | None = None, payload: str = ""
    ) -> list[DeliveryTask]:
        topic = self.settings.topics.deliveries
        made = []
        for n in range(count):
            body: dict[str, object] = {"n": n, "pad": payload} if payload else {"n": n}
            event = Event.new("instance.created", webhook.tenant_id).with_payload(body)
            task = DeliveryTask.for_event(event, webhook.id, webhook.url)
            extra = {} if partition is None else {"partition": partition}
            self.producer.produce(
                topic, key=webhook.id, value=self.serde.tasks.encode(task, topic), **extra
            )
            made.append(task)
        self._flush()
        return made

    def raw(self, value: bytes, partition: int = 0) -> None:
        self.producer.produce(
            self.settings.topics.deliveries, key=b"junk", value=value, partition=partition
        )
        self._flush()

    def _flush(self) -> None:
        assert self.producer.flush(30) == 0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 30.0, what: str = ""
) -> None:
    """Await ``condition`` becoming true (polled), or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or condition}")
        await asyncio.sleep(0.05)


class Recorder:
    """Every record of ``topic`` from the beginning, collected by a background thread."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.messages: list[Message] = []
        self._stop = threading.Event()
        self._consumer = Consumer(
            consumer_config(settings, f"recorder-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 20})
        )
        partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(100, 0.05):
                    if message.error() is None:
                        self.messages.append(message)
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
