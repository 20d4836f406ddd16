"""The delivery worker on the real broker, posting to real local receivers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from delivery.retry_headers import parse_retry_state
from delivery.sender import USER_AGENT
from delivery.worker import DeliveryWorker
from plumbing.kafka.deadletter import message_headers, parse_dead_letter
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from tests.fixtures_delivery import (
    Feeder,
    Receiver,
    Recorder,
    delivery_settings,
    eventually,
    running_receiver,
)
from tests.fixtures_delivery import receiver as receiver  # the fixture


@dataclass
class Harness:
    settings: Settings
    feed: Feeder
    attempts: Recorder
    dlt: Recorder
    webhooks: Recorder
    admin_events: Recorder
    worker: asyncio.Task[None] | None = None

    def log(self, task: DeliveryTask) -> list[WebhookDelivery]:
        topic = self.settings.topics.webhook_deliveries
        return [
            self.feed.serde.deliveries.decode(m.value(), topic)
            for m in list(self.attempts.messages)
            if m.key() == task.id.encode()
        ]

    def status(self, task: DeliveryTask) -> DeliveryStatus | None:
        if self.worker is not None and self.worker.done():
            raise AssertionError(f"the worker stopped: {self.worker.exception()!r}")
        records = self.log(task)
        return records[-1].status if records else None

    def disabled_events(self, webhook_id: str) -> list[Event]:
        """The ``webhook.disabled`` operational events about ``webhook_id``."""
        topic = self.admin_events.topic
        events = [
            self.feed.serde.events.decode(m.value(), topic)
            for m in list(self.admin_events.messages)
        ]
        return [
            e
            for e in events
            if e.type is EventType.WEBHOOK_DISABLED and e.payload["webhook_id"] == webhook_id
        ]

    def dead_letters(self, task: DeliveryTask) -> list[dict[str, str]]:
        found = []
        for message in list(self.dlt.messages):
            info = parse_dead_letter(message_headers(message))
            if info.extra.get("delivery-id") == task.id:
                found.append({"reason": info.reason, **info.extra})
        return found


async def start_harness(settings: Settings) -> tuple[Harness, asyncio.Event, asyncio.Task[None]]:
    feed = Feeder(settings)
    harness = Harness(
        settings,
        feed,
        Recorder(settings, settings.topics.webhook_deliveries),
        Recorder(settings, settings.topics.deliveries_dlt),
        Recorder(settings, settings.topics.webhooks),
        Recorder(settings, settings.topics.for_event_type(EventType.WEBHOOK_DISABLED)),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde=feed.serde).run(stop))
    harness.worker = worker
    return harness, stop, worker


@pytest.fixture
async def harness(kafka_bootstrap: str, registry_url: str) -> AsyncIterator[Harness]:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    h, stop, worker = await start_harness(settings)
    yield h
    await stop_harness(h, stop, worker)


async def stop_harness(h: Harness, stop: asyncio.Event, worker: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(worker, 30)
    for recorder in (h.attempts, h.dlt, h.webhooks, h.admin_events):
        recorder.close()


def verify(harness: Harness, receiver: Receiver, path: str, task: DeliveryTask) -> None:
    """Every request at ``path`` carries the task's event, signed, with webhook-id = event id."""
    secret = harness.feed.secrets[task.webhook_id]
    for request in receiver.at(path):
        assert request.headers["webhook-id"] == task.event.id
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == USER_AGENT
        # Error bodies are read raw for the attempt log: they must not come compressed.
        assert request.headers["Accept-Encoding"] == "identity"
        assert request.body == task.event.to_json().encode()
        Verifier(secret).verify(request.body, request.headers)


async def test_success_is_signed_and_recorded(harness: Harness, receiver: Receiver) -> None:
    webhook = harness.feed.webhook(receiver.script("/ok"))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED, what="delivered")
    assert len(receiver.at("/ok")) == 1
    verify(harness, receiver, "/ok", task)
    [record] = harness.log(task)
    assert (record.attempts, record.status_code, record.event_id) == (1, 200, task.event.id)
    assert json.loads(receiver.at("/ok")[0].body)["id"] == task.event.id


async def test_500_three_times_then_200(harness: Harness, receiver: Receiver) -> None:
    webhook = harness.feed.webhook(receiver.script("/flaky", [500, 500, 500], default=200))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED, what="delivered")
    requests = receiver.at("/flaky")
    assert len(requests) == 4
    verify(harness, receiver, "/flaky", task)
    log = harness.log(task)
    assert [(r.status, r.attempts) for r in log] == [
        (DeliveryStatus.RETRYING, 1),
        (DeliveryStatus.RETRYING, 2),
        (DeliveryStatus.RETRYING, 3),
        (DeliveryStatus.DELIVERED, 4),
    ]
    for record, following in zip(log[:3], requests[1:], strict=True):
        assert record.next_retry is not None
        assert following.at >= record.next_retry.timestamp(), "a retry fired before it was due"


async def test_always_500_is_dead_lettered_after_the_ladder(
    harness: Harness, receiver: Receiver
) -> None:
    webhook = harness.feed.webhook(receiver.script("/down", default=500))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: bool(harness.dead_letters(task)), what="dead letter")
    attempts = 1 + len(harness.settings.retry_tiers)
    assert len(receiver.at("/down")) == attempts
    [dead] = harness.dead_letters(task)
    assert "retries exhausted after 4 attempts: HTTP 500" in dead["reason"]
    assert dead["attempts"] == "4" and dead["webhook-id"] == webhook.id
    await eventually(lambda: harness.status(task) is DeliveryStatus.DEAD_LETTERED)
    log = harness.log(task)
    assert [r.attempts for r in log] == [1, 2, 3, 4]
    assert all(r.status_code == 500 for r in log)
    # The parked record is the task itself, with its journey in the headers.
    [message] = [m for m in harness.dlt.messages if m.key() == webhook.id.encode()]
    parked = harness.feed.serde.tasks.decode(message.value(), message.topic() or "")
    assert parked == task
    state = parse_retry_state(message_headers(message))
    assert state.original_topic == harness.settings.topics.deliveries
    assert state.attempts == 3


async def test_400_is_dead_lettered_at_once(harness: Harness, receiver: Receiver) -> None:
    webhook = harness.feed.webhook(receiver.script("/bad", default=400))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: bool(harness.dead_letters(task)), what="dead letter")
    assert len(receiver.at("/bad")) == 1
    [dead] = harness.dead_letters(task)
    assert dead["reason"].startswith("HTTP 400")
    await eventually(lambda: harness.status(task) is DeliveryStatus.DEAD_LETTERED)


async def test_410_disables_the_webhook(harness: Harness, receiver: Receiver) -> None:
    webhook = harness.feed.webhook(receiver.script("/gone", default=410))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DISABLED, what="disabled")
    topic = harness.settings.topics.webhooks

    def latest() -> bool:
        versions = [
            harness.feed.serde.webhooks.decode(m.value(), topic)
            for m in list(harness.webhooks.messages)
            if m.key() == webhook.id.encode()
        ]
        return bool(versions) and not versions[-1].active

    await eventually(latest, what="webhook written back inactive")
    # Written in the same pass, but read back from another topic: it may arrive a moment later.
    await eventually(lambda: bool(harness.dead_letters(task)), what="the dead letter")
    # An operational event says so, on the admin topic, in the webhook's tenant.
    await eventually(lambda: bool(harness.disabled_events(webhook.id)), what="webhook.disabled")
    [event] = harness.disabled_events(webhook.id)
    assert event.tenant_id == webhook.tenant_id
    assert event.payload == {"webhook_id": webhook.id, "reason": "endpoint answered 410 Gone"}
    # Later tasks for the disabled webhook are recorded and dropped, never posted.
    [later] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(later) is DeliveryStatus.DISABLED)
    assert len(receiver.at("/gone")) == 1


async def test_several_410s_at_once_disable_the_webhook_once(
    harness: Harness, receiver: Receiver
) -> None:
    webhook = harness.feed.webhook(receiver.script("/gone-all", default=410))
    tasks = harness.feed.tasks(webhook, count=4, partition=0)  # posted side by side
    await eventually(
        lambda: all(harness.status(t) is DeliveryStatus.DISABLED for t in tasks),
        what="every task disabled",
    )
    await eventually(lambda: bool(harness.disabled_events(webhook.id)), what="webhook.disabled")
    await asyncio.sleep(1)  # time for any duplicate to arrive
    assert len(harness.disabled_events(webhook.id)) == 1
    topic = harness.settings.topics.webhooks
    writes = [m for m in list(harness.webhooks.messages) if m.key() == webhook.id.encode()]
    inactive = [
        m for m in writes if not harness.feed.serde.webhooks.decode(m.value(), topic).active
    ]
    assert len(inactive) == 1, "the webhook is written back inactive once"


async def test_a_webhook_failing_past_the_window_is_disabled_and_an_event_says_so(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url, delivery_disable_after=0.2)
    h, stop, worker = await start_harness(settings)
    try:
        webhook = h.feed.webhook(receiver.script("/failing", default=500))
        [task] = h.feed.tasks(webhook)
        await eventually(lambda: bool(h.disabled_events(webhook.id)), what="webhook.disabled")
        [event] = h.disabled_events(webhook.id)
        reason = "failing for 0.2s without a success"
        assert (event.tenant_id, event.payload) == (
            webhook.tenant_id,
            {"webhook_id": webhook.id, "reason": reason},
        )
        # The task's next attempt finds the webhook disabled: recorded, never posted.
        await eventually(lambda: h.status(task) is DeliveryStatus.DISABLED, what="disabled")
        assert 2 <= len(receiver.at("/failing")) < 1 + len(settings.retry_tiers)
    finally:
        await stop_harness(h, stop, worker)


async def test_an_attempt_past_the_total_timeout_is_cut_and_retried(
    harness: Harness, receiver: Receiver
) -> None:
    webhook = harness.feed.webhook(receiver.script("/slow", ["hang"], default=200))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED, what="delivered")
    assert len(receiver.at("/slow")) == 2
    first, second = harness.log(task)
    limit = harness.settings.delivery_timeout
    assert (first.status, first.status_code, first.error) == (
        DeliveryStatus.RETRYING,
        0,
        f"timeout after {limit}s",
    )
    # Cut by the sweep, never before the limit (the endpoint itself would hang for ever).
    assert first.duration_ms >= limit * 1000
    assert (second.status, second.attempts) == (DeliveryStatus.DELIVERED, 2)


async def test_hanging_endpoint_does_not_hold_up_a_healthy_one(
    harness: Harness, receiver: Receiver
) -> None:
    slow = harness.feed.webhook(receiver.script("/hang", ["hang"], default=200))
    fast = harness.feed.webhook(receiver.script("/fast"))
    [stuck] = harness.feed.tasks(slow, partition=0)
    healthy = harness.feed.tasks(fast, count=5, partition=0)  # behind it, same partition
    await eventually(lambda: receiver.hanging == 1, what="the hanging request")
    await eventually(
        lambda: all(harness.status(t) is DeliveryStatus.DELIVERED for t in healthy),
        what="the healthy endpoint's deliveries",
    )
    assert receiver.hanging == 1, "healthy deliveries finished while the slow one still hangs"
    assert harness.status(stuck) is None
    receiver.release()
    await eventually(lambda: harness.status(stuck) is DeliveryStatus.DELIVERED)


async def test_a_hanging_endpoints_queue_is_deferred_not_held(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    """One endpoint that never answers must not take the worker's in-flight budget: its queued
    tasks go back to the retry tier, and another endpoint's tasks behind them are delivered
    long before the hanging attempt times out."""
    settings = delivery_settings(
        kafka_bootstrap,
        registry_url,
        delivery_per_endpoint_limit=1,
        delivery_concurrency=10,
        delivery_queue_wait=0.3,
        delivery_timeout=10.0,
    )
    h, stop, worker = await start_harness(settings)
    try:
        async with running_receiver() as other:
            slow = h.feed.webhook(other.script("/hang", default="hang"))
            fast = h.feed.webhook(receiver.script("/fast"))
            stuck = h.feed.tasks(slow, count=30, partition=0)  # three times the budget
            healthy = h.feed.tasks(fast, count=5, partition=0)  # behind them
            await eventually(
                lambda: all(h.status(t) is DeliveryStatus.DELIVERED for t in healthy),
                what="the healthy endpoint's deliveries",
            )
            # Still in flight: the healthy ones did not wait for the hanging attempt's timeout.
            assert other.hanging >= 1, "the hanging attempt is still in flight"
            deferred = [
                r for t in stuck for r in h.log(t) if (r.error or "").startswith("deferred")
            ]
            assert deferred, "the hanging endpoint's queue was not deferred"
            assert all((r.status, r.attempts) == (DeliveryStatus.RETRYING, 0) for r in deferred)
            assert all(r.next_retry is not None for r in deferred)
            # Deferred, not lost: once the endpoint answers, every one of them is delivered.
            other.release()
            await eventually(
                lambda: all(h.status(t) is DeliveryStatus.DELIVERED for t in stuck),
                what="the deferred tasks, delivered once the endpoint answers",
            )
    finally:
        await stop_harness(h, stop, worker)


async def test_retry_after_is_honoured(harness: Harness, receiver: Receiver) -> None:
    webhook = harness.feed.webhook(receiver.script("/later", [(429, {"Retry-After": "1"})]))
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED)
    first, second = receiver.at("/later")
    assert second.at - first.at >= 1.0


async def test_undecodable_task_goes_to_the_dlt_and_the_partition_moves_on(
    harness: Harness, receiver: Receiver
) -> None:
    harness.feed.raw(b"\x00\x00\x00\x00\x99garbage", partition=1)
    webhook = harness.feed.webhook(receiver.script("/after"))
    [task] = harness.feed.tasks(webhook, partition=1)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED)

    def parked() -> list[str]:
        return [
            parse_dead_letter(message_headers(m)).reason
            for m in list(harness.dlt.messages)
            if m.key() == b"junk"
        ]

    await eventually(lambda: bool(parked()))
    assert parked()[0].startswith("undecodable delivery task")


async def test_ssrf_guard_refuses_loopback_unless_allowed(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url, delivery_allowed_networks=())
    h, stop, worker = await start_harness(settings)
    try:
        webhook = h.feed.webhook(receiver.script("/private"))
        [task] = h.feed.tasks(webhook)
        await eventually(lambda: bool(h.dead_letters(task)), what="dead letter")
        assert "SSRF" in h.dead_letters(task)[0]["reason"]
        assert receiver.at("/private") == []
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        for recorder in (h.attempts, h.dlt, h.webhooks):
            recorder.close()
