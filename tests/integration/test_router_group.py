"""Several router workers in one consumer group: config broadcast, exactly-once routing in steady
state, and no lost task when a worker is SIGKILLed mid-stream."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import delivery_id
from schemas.serde import Serde
from streams.app import app_id
from tests.fixtures_streams import (
    TopicReader,
    WorkerProcess,
    diagnose_missing,
    make_webhook,
    publish,
    put_webhooks,
    wait_until,
)

TENANTS = [f"ten_{i}" for i in range(12)]  # spread over every partition


@pytest.fixture
def serde(settings: Settings) -> Serde:
    return serde_for(settings)


def event_batch(count: int) -> list[Event]:
    types = [
        EventType.INSTANCE_CREATED,
        EventType.DEPLOY_FAILED,
        EventType.HEALTH_FAILED,
        EventType.DOMAIN_ADDED,
        EventType.QUOTA_EXCEEDED,
    ]
    return [Event.new(types[i % len(types)], TENANTS[i % len(TENANTS)]) for i in range(count)]


def test_three_workers_share_the_work_and_all_see_config_updates(
    settings: Settings, cli_env: dict[str, str], serde: Serde
) -> None:
    hooks = {tenant: make_webhook(tenant) for tenant in TENANTS}
    put_webhooks(settings, serde, *hooks.values())
    workers = [WorkerProcess(cli_env, settings) for _ in range(3)]
    deliveries = TopicReader(settings, settings.topics.deliveries)
    try:
        total = 5 * 3  # five event topics of three partitions

        def steady() -> bool:
            stats = [w.stats() for w in workers]
            return (
                all(s and s["assigned_partitions"] > 0 for s in stats)
                and sum(s["assigned_partitions"] for s in stats if s) == total
            )

        wait_until(steady, 90, "three workers sharing every partition")

        # A config update reaches every worker, whoever owns the tenant's partitions.
        extra = make_webhook(TENANTS[0], ("deploy.*",))
        put_webhooks(settings, serde, extra)
        for worker in workers:

            def knows_extra(w: WorkerProcess = worker) -> object:
                return w.get(f"/router/webhooks/{extra.id}/")

            wait_until(knows_extra, 5, "the update")

        events = event_batch(600)
        publish(settings, serde, events)
        expected = Counter(delivery_id(e.id, hooks[e.tenant_id].id) for e in events) + Counter(
            delivery_id(e.id, extra.id)
            for e in events
            if e.tenant_id == TENANTS[0] and e.type.startswith("deploy.")
        )
        wait_until(lambda: deliveries.count() >= expected.total(), 60, "every task")
        deliveries.read_to_end()
        routed = Counter(
            serde.tasks.decode(m.value(), settings.topics.deliveries).id
            for m in deliveries.messages
        )
        assert routed == expected  # each task exactly once
        assert sum(1 for w in workers if (w.stats() or {}).get("routed_events")) == 3
    finally:
        deliveries.close()
        for worker in workers:
            worker.stop()


def test_sigkill_mid_stream_loses_no_task(
    settings: Settings, cli_env: dict[str, str], serde: Serde
) -> None:
    hooks = {tenant: make_webhook(tenant) for tenant in TENANTS}
    put_webhooks(settings, serde, *hooks.values())
    victim = WorkerProcess(cli_env, settings)
    deliveries = TopicReader(settings, settings.topics.deliveries)
    events = event_batch(3000)
    replacement: WorkerProcess | None = None
    try:
        wait_until(victim.stats, 60, "the first worker")
        # Keep producing while the worker is killed, so it dies with batches in flight.
        paced = threading.Event()  # never set: wait(0.1) paces the batches over ~3 s

        def produce_paced() -> None:
            for i in range(0, len(events), 100):
                publish(settings, serde, events[i : i + 100])
                paced.wait(0.1)

        producer = threading.Thread(target=produce_paced)
        producer.start()
        wait_until(lambda: deliveries.count() >= 300, 60, "routing under way")
        victim.kill()
        routed_before_kill = deliveries.count()
        assert routed_before_kill < len(events), "the kill must happen mid-stream"
        producer.join(timeout=120)
        replacement = WorkerProcess(cli_env, settings)
        expected = {delivery_id(e.id, hooks[e.tenant_id].id) for e in events}

        # Every task read so far counts, including those read before the kill (by count()).
        seen: set[str] = set()
        decoded = 0

        def all_tasks() -> bool:
            nonlocal decoded
            assert replacement is not None
            replacement.stats()  # fails fast if it died
            deliveries.poll()
            for message in deliveries.messages[decoded:]:
                seen.add(serde.tasks.decode(message.value(), settings.topics.deliveries).id)
            decoded = len(deliveries.messages)
            return seen >= expected

        try:
            wait_until(all_tasks, 90, "every task after the kill")
        except AssertionError as exc:
            missing = {e.id for e in events if delivery_id(e.id, hooks[e.tenant_id].id) not in seen}
            report = diagnose_missing(settings, serde, app_id(settings), missing)
            raise AssertionError(
                f"{exc}: {len(missing)} events without a task\n{report}\n"
                f"victim's log:\n{victim.log_tail(30)}\n"
                f"replacement's log:\n{replacement.log_tail(80)}"
            ) from None
        deliveries.read_to_end()
        tasks = [
            serde.tasks.decode(m.value(), settings.topics.deliveries) for m in deliveries.messages
        ]
        ids = Counter(t.id for t in tasks)
        # Nothing lost; replays (allowed) carry the same ids, so no unknown id either.
        assert set(ids) == expected
        for task in tasks:
            assert task.id == delivery_id(task.event.id, task.webhook_id)
    finally:
        deliveries.close()
        victim.stop()
        if replacement is not None:
            replacement.stop()
