"""Delivery hardening (issue 14) on the real broker, posting to real local receivers: an open
breaker defers instead of burning the retry ladder, an output too large dead-letters its task
instead of stopping the worker, a webhook created a moment ago is waited for, a worker with
another secret key refuses to start, and a disable never undoes a rotation it did not see."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from standardwebhooks.webhooks import Webhook as Verifier

from delivery.webhooks import WebhookDirectory
from plumbing.kafka.clients import admin_config
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.secrets import generate_encryption_key
from tests.conftest import settings_env
from tests.fixtures_delivery import (
    Feeder,
    Received,
    Receiver,
    delivery_settings,
    eventually,
    free_port,
    running_receiver,
)
from tests.fixtures_delivery import receiver as receiver  # the fixture
from tests.integration.test_delivery_worker import Harness, start_harness, stop_harness
from tests.integration.test_delivery_worker import harness as harness  # the fixture

# Fast breakers, trying again within a fraction of a second. A burst of never-tried tasks
# (each failing its first attempt) still opens one at once; a lower threshold only makes the
# endpoint below take longer (every closed spell lets that many first attempts through).
BREAKER = {
    "delivery_breaker_failures": 100,
    "delivery_breaker_cooldown": 0.05,
    "delivery_breaker_max_cooldown": 0.2,
    # A loaded test process must not turn a 200 into a timeout (an attempt more).
    "delivery_timeout": 10.0,
}


def attempt_log(h: Harness) -> dict[str, list[WebhookDelivery]]:
    """Every attempt record so far, by delivery id, in order (decoded once per call)."""
    if h.worker is not None and h.worker.done():
        raise AssertionError(f"the worker stopped: {h.worker.exception()!r}")
    topic = h.settings.topics.webhook_deliveries
    log: dict[str, list[WebhookDelivery]] = defaultdict(list)
    for message in list(h.attempts.messages):
        record = h.feed.serde.deliveries.decode(message.value(), topic)
        log[record.id].append(record)
    return log


def all_final(h: Harness, tasks: list[DeliveryTask]) -> Callable[[], bool]:
    final = {DeliveryStatus.DELIVERED, DeliveryStatus.DEAD_LETTERED, DeliveryStatus.DISABLED}

    def check() -> bool:
        log = attempt_log(h)
        return all(log[t.id] and log[t.id][-1].status in final for t in tasks)

    return check


def is_deferral(record: WebhookDelivery) -> bool:
    return (record.error or "").startswith("deferred:")


def assert_only_sent_attempts_counted(records: list[WebhookDelivery]) -> list[WebhookDelivery]:
    """Each sent attempt counts one more; a deferral counts nothing. The sent ones."""
    sent, count = [], 0
    for record in records:
        if is_deferral(record):
            assert record.attempts == count, records
            assert record.status is DeliveryStatus.RETRYING and record.status_code == 0
        else:
            count += 1
            assert record.attempts == count, records
            sent.append(record)
    return sent


async def test_a_breaker_opened_by_first_attempts_failing_dead_letters_nothing(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    """Every event's first attempt fails (500) and its second succeeds: the breaker keeps
    opening, and its deferrals must not burn the ladder (before: "retries exhausted after
    4 attempts: circuit open" for almost every event, tried once or twice)."""
    settings = delivery_settings(kafka_bootstrap, registry_url, **BREAKER)
    h, stop, worker = await start_harness(settings)
    try:
        seen: set[str] = set()

        def first_fails(request: Received) -> int:
            event = request.headers["webhook-id"]
            if event in seen:
                return 200
            seen.add(event)
            return 500

        receiver.answer = first_fails
        webhook = h.feed.webhook(receiver.url("/first-fails"))
        tasks: list[DeliveryTask] = []
        for _ in range(4):  # 1,000 events over a couple of seconds
            tasks += h.feed.tasks(webhook, count=250)
            await asyncio.sleep(0.5)
        await eventually(all_final(h, tasks), within=90, what="every task settled")
        log = attempt_log(h)
        assert [t.id for t in tasks if log[t.id][-1].status is not DeliveryStatus.DELIVERED] == []
        assert not h.dlt.messages, "nothing dead-lettered"
        requests = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert max(requests.values()) == 2 and set(requests) == {t.event.id for t in tasks}
        deferrals = 0
        for task in tasks:
            sent = assert_only_sent_attempts_counted(log[task.id])
            assert len(sent) == requests[task.event.id] <= 2
            deferrals += len(log[task.id]) - len(sent)
        assert deferrals, "the breaker never opened: the test proves nothing"
    finally:
        await stop_harness(h, stop, worker)


async def test_an_endpoint_down_for_a_while_gets_everything_once_it_is_up(
    kafka_bootstrap: str, registry_url: str
) -> None:
    """Connections refused for longer than the whole ladder takes, then a server on the port:
    every task is delivered, and only the requests really sent were counted."""
    # Opens after three refusals in a row, one trial at a time: only a few tasks are really
    # tried while it is down (each a handful of times at most: far from the ladder's four).
    breaker = {"delivery_breaker_failures": 3, "delivery_breaker_max_cooldown": 0.5}
    settings = delivery_settings(
        kafka_bootstrap, registry_url, **{**BREAKER, **breaker, "delivery_breaker_trials": 1}
    )
    port = free_port()
    h, stop, worker = await start_harness(settings)
    try:
        webhook = h.feed.webhook(f"http://127.0.0.1:{port}/back")
        tasks = h.feed.tasks(webhook, count=200)
        # Down for over four times the ladder (50 + 200 + 500 ms): without deferral, this
        # alone dead-letters everything.
        await asyncio.sleep(4)
        log = attempt_log(h)
        assert not h.dlt.messages
        assert sum(map(is_deferral, (r for t in tasks for r in log[t.id]))) >= len(tasks)
        async with running_receiver(port) as back:
            await eventually(all_final(h, tasks), within=30, what="every task settled")
            log = attempt_log(h)
            assert {log[t.id][-1].status for t in tasks} == {DeliveryStatus.DELIVERED}
            assert not h.dlt.messages
            requests = Counter(r.headers["webhook-id"] for r in back.requests)
            for task in tasks:
                sent = assert_only_sent_attempts_counted(log[task.id])
                assert len(sent) <= 1 + len(settings.retry_tiers)
                answered = [r for r in sent if r.status_code]
                assert len(answered) == requests[task.event.id] == 1
                # The others were really tried: refused connections, not an open breaker.
                refused = [r for r in sent if not r.status_code]
                assert all("connect" in (r.error or "").lower() for r in refused), refused
    finally:
        await stop_harness(h, stop, worker)


def limit_topic_bytes(settings: Settings, topic: str, limit: int) -> None:
    """Set ``topic``'s ``max.message.bytes`` (the broker refuses larger record batches)."""
    admin = AdminClient(admin_config(settings))
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


async def test_a_retry_record_too_large_for_its_tier_dead_letters_the_task(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    """The task fits its topic, but with its retry headers not the first tier's: the task is
    dead-lettered naming the size, and the partition goes on (before: the worker stopped, and
    replayed the same batch on every restart)."""
    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    big_hook = feed.webhook(receiver.script("/big", default=500))
    ok_hook = feed.webhook(receiver.script("/ok"))
    pad = os.urandom(1500).hex()  # incompressible: the limit is on compressed batches
    [big] = feed.tasks(big_hook, partition=0, payload=pad)
    size = len(feed.serde.tasks.encode(big, settings.topics.deliveries))
    # Room for the task and a record batch's overhead, not for the ~200 bytes of retry headers.
    limit_topic_bytes(settings, settings.topics.retry(settings.retry_tiers[0]), size + 150)
    h, stop, worker = await start_harness(settings)
    try:
        later = h.feed.tasks(ok_hook, count=5, partition=0)
        await eventually(lambda: bool(h.dead_letters(big)), what="the big task dead-lettered")
        [dead] = h.dead_letters(big)
        assert "too large" in dead["reason"] and "bytes" in dead["reason"], dead
        assert settings.topics.retry(settings.retry_tiers[0]) in dead["reason"]
        await eventually(all_final(h, [big, *later]), what="every task settled")
        log = attempt_log(h)
        assert log[big.id][-1].status is DeliveryStatus.DEAD_LETTERED
        assert all(log[t.id][-1].status is DeliveryStatus.DELIVERED for t in later)
        [parked] = [m for m in h.dlt.messages if m.key() == big_hook.id.encode()]
        assert parked.value() == feed.serde.tasks.encode(big, settings.topics.deliveries) or (
            feed.serde.tasks.decode(parked.value(), settings.topics.deliveries_dlt) == big
        )
    finally:
        await stop_harness(h, stop, worker)


async def test_tasks_for_webhooks_created_a_moment_ago_are_delivered(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router saw each webhook before the worker's view did (a view slowed down here):
    the worker waits for its view to catch up instead of dropping the task for good."""
    decode = WebhookDirectory._decode

    def slow_decode(self: WebhookDirectory, message: object) -> object:
        time.sleep(0.2)  # the view's own thread: the worker's loop goes on
        return decode(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(WebhookDirectory, "_decode", slow_decode)
    settings = delivery_settings(kafka_bootstrap, registry_url)
    h, stop, worker = await start_harness(settings)
    try:
        tasks = []
        # Each task reaches the worker while its webhook is still on the way into the view,
        # further behind with every one.
        for n in range(15):
            webhook = h.feed.webhook(receiver.script(f"/new-{n}"))
            tasks += h.feed.tasks(webhook)
            await asyncio.sleep(0.1)
        await eventually(all_final(h, tasks), what="every task settled")
        log = attempt_log(h)
        assert {log[t.id][-1].status for t in tasks} == {DeliveryStatus.DELIVERED}
    finally:
        await stop_harness(h, stop, worker)


async def test_a_worker_with_another_secret_key_refuses_to_start(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    Feeder(settings).webhook(receiver.script("/any"))
    env = {
        **os.environ,
        **settings_env(settings),
        "CPEVENTS_SECRET_KEY": generate_encryption_key(),  # not the one the secrets are under
        "CPEVENTS_DELIVERY_WEB_PORT": "0",  # any free port for /metrics
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cpevents", "worker", "delivery"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode not in (0, None)
    assert "CPEVENTS_SECRET_KEY" in output.decode(), output.decode()


async def test_a_410_from_before_a_rotation_does_not_disable_the_rotated_webhook(
    harness: Harness, receiver: Receiver
) -> None:
    """The secret is rotated while the attempt is in flight; the endpoint then answers 410.
    The disable was decided on the old version: written back, it would undo the rotation, so
    the task tries the current version instead (and the next attempt decides)."""
    webhook = harness.feed.webhook(receiver.url("/rotated"))
    rotated: list[object] = []

    async def rotate_then_gone(request: Received) -> int:
        if rotated:
            return 200
        rotated.append(harness.feed.rotate(webhook))
        await asyncio.sleep(1.0)  # the worker's view reads the rotation meanwhile
        return 410

    receiver.answer = rotate_then_gone
    [task] = harness.feed.tasks(webhook)
    await eventually(lambda: harness.status(task) is DeliveryStatus.DELIVERED, what="delivered")
    assert not harness.disabled_events(webhook.id)
    topic = harness.settings.topics.webhooks
    versions = [
        harness.feed.serde.webhooks.decode(m.value(), topic)
        for m in list(harness.webhooks.messages)
        if m.key() == webhook.id.encode()
    ]
    assert versions[-1] == rotated[0] and versions[-1].active
    _, second = receiver.at("/rotated")
    Verifier(harness.feed.secrets[webhook.id]).verify(second.body, second.headers)
    assert [r.status for r in harness.log(task)] == [
        DeliveryStatus.RETRYING,
        DeliveryStatus.DELIVERED,
    ]
