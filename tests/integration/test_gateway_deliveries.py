"""``GET /v1/deliveries`` and ``POST /v1/deliveries/{id}/retry`` on the real broker."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.deadletter import dead_letter_headers
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from tests.fixtures_gateway import RunningGateway
from tests.fixtures_gateway import gateway as gateway  # fixture
from tests.integration.test_gateway import ADMIN, A, B, call
from tests.kafka_helpers import read_all


def attempt(task: DeliveryTask, status: DeliveryStatus, code: int) -> WebhookDelivery:
    return WebhookDelivery(
        id=task.id,
        webhook_id=task.webhook_id,
        event_id=task.event.id,
        tenant_id=task.tenant_id,
        status=status,
        attempts=3,
        status_code=code,
        error=None if code == 200 else f"HTTP {code}",
    )


def write_log(gw: RunningGateway, deliveries: list[WebhookDelivery]) -> None:
    producer = Producer(producer_config(gw.settings))
    topic = gw.settings.topics.webhook_deliveries
    for delivery in deliveries:
        producer.produce(
            topic, key=delivery.id.encode(), value=gw.serde.deliveries.encode(delivery, topic)
        )
    assert producer.flush(30) == 0


def dead_letter(gw: RunningGateway, task: DeliveryTask) -> None:
    """Park ``task`` the way the delivery worker does: via its deliveries record."""
    producer = Producer(producer_config(gw.settings))
    topics = gw.settings.topics
    producer.produce(
        topics.deliveries,
        key=task.webhook_id.encode(),
        value=gw.serde.tasks.encode(task, topics.deliveries),
        headers=[("retry-attempt", b"7")],
    )
    assert producer.flush(30) == 0
    (original,) = read_all(gw.settings, [topics.deliveries], 1)
    producer.produce(
        topics.deliveries_dlt,
        key=original.key(),
        value=original.value(),
        headers=dead_letter_headers(original, "HTTP 500 after the ladder", "delivery", 1),
    )
    assert producer.flush(30) == 0


async def listed(gw: RunningGateway, query: str, headers: dict[str, str]) -> list[str]:
    status, body = await call(gw, "GET", "/v1/deliveries" + query, headers)
    assert status == 200, body
    return sorted(d["id"] for d in body["deliveries"])


async def test_delivery_queries_are_tenant_scoped_and_retry_re_enqueues(
    gateway: RunningGateway,
) -> None:
    hook_a, hook_b = new_id(WEBHOOK), new_id(WEBHOOK)
    event_a = Event.new(EventType.INSTANCE_FAILED, "ten_a")
    event_a2 = Event.new(EventType.INSTANCE_FAILED, "ten_a")
    event_b = Event.new(EventType.INSTANCE_FAILED, "ten_b")
    failed = DeliveryTask.for_event(event_a, hook_a, "https://a.test/hook")
    ok = DeliveryTask.for_event(event_a2, hook_a, "https://a.test/hook")
    other = DeliveryTask.for_event(event_b, hook_b, "https://b.test/hook")
    write_log(
        gateway,
        [
            attempt(failed, DeliveryStatus.DEAD_LETTERED, 500),
            attempt(ok, DeliveryStatus.DELIVERED, 200),
            attempt(other, DeliveryStatus.DEAD_LETTERED, 500),
        ],
    )
    deadline = time.monotonic() + 30
    while len(await listed(gateway, "", ADMIN)) < 3:
        assert time.monotonic() < deadline, "attempt log not visible"
        await asyncio.sleep(0.05)

    assert await listed(gateway, "", A) == sorted([failed.id, ok.id])
    assert await listed(gateway, "", B) == [other.id]
    assert await listed(gateway, f"?event_id={event_a.id}", A) == [failed.id]
    assert await listed(gateway, f"?webhook_id={hook_a}&status=delivered", A) == [ok.id]
    assert await listed(gateway, "?status=dead_lettered", ADMIN) == sorted([failed.id, other.id])
    assert await listed(gateway, "?tenant_id=ten_b", ADMIN) == [other.id]
    assert await listed(gateway, f"?event_id={event_b.id}", A) == []
    status, problem = await call(gateway, "GET", "/v1/deliveries?tenant_id=ten_b", A)
    assert (status, problem["field"]) == (403, "tenant_id")
    status, problem = await call(gateway, "GET", "/v1/deliveries?status=lost", A)
    assert (status, problem["field"]) == (422, "status")

    # Retry: only the owner, only dead letters, and the task goes back to the queue as new.
    dead_letter(gateway, failed)
    assert (await call(gateway, "POST", f"/v1/deliveries/{failed.id}/retry", B))[0] == 404
    status, problem = await call(gateway, "POST", f"/v1/deliveries/{ok.id}/retry", A)
    assert (status, problem["field"]) == (409, "id")
    status, body = await call(gateway, "POST", f"/v1/deliveries/{failed.id}/retry", A)
    assert (status, body) == (202, {"id": failed.id, "requeued": True})
    original, requeued = read_all(gateway.settings, [gateway.settings.topics.deliveries], 2)
    assert requeued.value() == original.value()
    assert requeued.key() == hook_a.encode()
    assert [name for name, _ in requeued.headers() or []] == []
    task = gateway.serde.tasks.decode(requeued.value(), gateway.settings.topics.deliveries)
    assert task == failed

    # Dead-lettered in the log but not in the dead-letter topic: nothing to re-enqueue.
    status, problem = await call(gateway, "POST", f"/v1/deliveries/{other.id}/retry", B)
    assert (status, problem["field"]) == (409, "id")
