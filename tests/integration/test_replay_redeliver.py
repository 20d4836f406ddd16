"""``cpevents replay --redeliver --webhook ID``: tasks on the deliveries topic, refusals, the
confirmation prompt, and (through the delivery worker) a signed POST to a local receiver."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from datetime import UTC, datetime

from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition
from standardwebhooks import Webhook as StandardWebhook

from delivery.worker import DeliveryWorker
from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, delivery_id, new_id
from schemas.secrets import SecretBox, generate_secret
from schemas.serde import Serde
from schemas.webhook import EncryptedSecret, Webhook
from tests.conftest import make_settings
from tests.fixtures_replay import invoke_replay
from tests.kafka_helpers import read_all


def put_webhook(settings: Settings, serde: Serde, webhook: Webhook) -> None:
    producer = Producer(producer_config(settings))
    topic = settings.topics.webhooks
    producer.produce(topic, key=webhook.id.encode(), value=serde.webhooks.encode(webhook, topic))
    assert producer.flush(30) == 0


def publish(
    settings: Settings,
    serde: Serde,
    events: list[Event],
    traceparents: dict[str, str] | None = None,
) -> None:
    producer = Producer(producer_config(settings))
    for event in events:
        topic = settings.topics.for_event_type(event.type)
        traceparent = (traceparents or {}).get(event.id)
        producer.produce(
            topic,
            key=event.tenant_id.encode(),
            value=serde.events.encode(event, topic),
            timestamp=int(event.timestamp.timestamp() * 1000),
            headers=[("traceparent", traceparent.encode())] if traceparent else None,
        )
    assert producer.flush(30) == 0


def history(base: float) -> list[Event]:
    """Events one second apart from ``base`` (epoch seconds): two tenants, several types."""
    kinds = [
        (EventType.INSTANCE_CREATED, "ten_x"),
        (EventType.INSTANCE_CREATED, "ten_y"),
        (EventType.DEPLOY_FAILED, "ten_x"),
        (EventType.HEALTH_FAILED, "ten_x"),
        (EventType.INSTANCE_STOPPED, "ten_x"),
        (EventType.DEPLOY_SUCCEEDED, "ten_x"),
    ]
    return [
        Event(
            id=Event.new(kind, tenant).id,
            type=kind,
            tenant_id=tenant,
            timestamp=datetime.fromtimestamp(base + n, UTC),
            payload={"n": n},
        )
        for n, (kind, tenant) in enumerate(kinds)
    ]


def deliveries_count(settings: Settings) -> int:
    consumer = Consumer(consumer_config(settings, "watermarks"))
    try:
        topic = settings.topics.deliveries
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        consumer.close()


def make_webhook(
    settings: Settings, tenant: str, url: str, **changes: object
) -> tuple[Webhook, str]:
    secret = generate_secret()
    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key.get_secret_value())
    webhook = Webhook(
        id=new_id(WEBHOOK),
        tenant_id=tenant,
        url=url,
        events=("instance.*", "deploy.failed"),
        secrets=(EncryptedSecret(box.encrypt(secret), datetime.now(UTC)),),
    )
    return (webhook.updated(**changes) if changes else webhook), secret


def test_redeliver_produces_tasks_for_the_webhooks_tenant_and_types(settings: Settings) -> None:
    serde = serde_for(settings)
    webhook, _ = make_webhook(settings, "ten_x", "https://example.com/hook")
    put_webhook(settings, serde, webhook)
    events = history(time.time() - 600)
    # Each event as the gateway writes it when tracing is on: the redelivery continues its trace.
    traceparents = {e.id: f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for e in events}
    publish(settings, serde, events, traceparents)

    result = invoke_replay(
        settings,
        "--since",
        "1h",
        "--redeliver",
        "--webhook",
        webhook.id,
        "--yes",
    )
    assert result.exit_code == 0, result.stderr
    wanted = [e for e in events if e.tenant_id == "ten_x" and e.type != "health.failed"]
    wanted = [e for e in wanted if e.type.startswith("instance.") or e.type == "deploy.failed"]
    assert result.stdout.splitlines() == [e.to_json() for e in wanted]
    assert f"3 redelivered to {webhook.id}" in result.stderr

    records = read_all(settings, [settings.topics.deliveries], expected=len(wanted))
    tasks = sorted(
        (serde.tasks.decode(m.value(), m.topic() or "") for m in records),
        key=lambda t: t.event.timestamp,
    )
    assert {m.key() for m in records} == {webhook.id.encode()}
    assert [t.id for t in tasks] == [delivery_id(e.id, webhook.id) for e in wanted]
    assert [t.event for t in tasks] == wanted
    assert all(
        (t.webhook_id, t.url, t.tenant_id) == (webhook.id, webhook.url, "ten_x") for t in tasks
    )
    for message in records:
        task = serde.tasks.decode(message.value(), message.topic() or "")
        assert dict(message.headers() or []) == {
            "traceparent": traceparents[task.event.id].encode()
        }


def test_redeliver_refusals_and_confirmation(settings: Settings) -> None:
    serde = serde_for(settings)
    active, _ = make_webhook(settings, "ten_x", "https://example.com/a")
    inactive, _ = make_webhook(settings, "ten_x", "https://example.com/b", active=False)
    for webhook in (active, inactive):
        put_webhook(settings, serde, webhook)
    publish(settings, serde, history(time.time() - 600))

    other_tenant = invoke_replay(
        settings,
        "--redeliver",
        "--webhook",
        active.id,
        "--tenant",
        "ten_y",
        "--yes",
    )
    assert other_tenant.exit_code == 2 and "another tenant" in other_tenant.stderr
    disabled = invoke_replay(settings, "--redeliver", "--webhook", inactive.id, "--yes")
    assert disabled.exit_code == 2 and "inactive" in disabled.stderr
    unknown = invoke_replay(settings, "--redeliver", "--webhook", new_id(WEBHOOK))
    assert unknown.exit_code == 2 and "does not exist" in unknown.stderr
    declined = invoke_replay(settings, "--redeliver", "--webhook", active.id, input="n\n")
    assert declined.exit_code == 1 and "Redeliver 3 events" in declined.stderr
    assert deliveries_count(settings) == 0

    accepted = invoke_replay(settings, "--redeliver", "--webhook", active.id, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert deliveries_count(settings) == 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redelivery_reaches_the_receiver_signed(
    kafka_bootstrap: str, registry_url: str
) -> None:
    """End to end through the delivery worker: same webhook-id (the event id), valid signature."""
    settings = make_settings(
        kafka_bootstrap,
        schema_registry_url=registry_url,
        delivery_allowed_networks=("127.0.0.0/8",),
    )
    ensure_topics(settings)
    serde = serde_for(settings)
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        arrived.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    webhook, secret = make_webhook(settings, "ten_x", f"http://127.0.0.1:{port}/hook")
    put_webhook(settings, serde, webhook)
    event = history(time.time() - 600)[2]  # deploy.failed of ten_x
    publish(settings, serde, [event])

    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde).run(stop))
    try:
        result = await asyncio.to_thread(
            invoke_replay, settings, "--redeliver", "--webhook", webhook.id, "--yes"
        )
        assert result.exit_code == 0, result.stderr
        await asyncio.wait_for(arrived.wait(), 30)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await runner.cleanup()

    headers, body = received[0]
    assert headers["webhook-id"] == event.id
    StandardWebhook(secret).verify(body, headers)
    assert Event.from_json(body) == event
    assert DeliveryTask.for_event(event, webhook.id, webhook.url).id == delivery_id(
        event.id, webhook.id
    )
