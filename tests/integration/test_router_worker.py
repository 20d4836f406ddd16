"""One router worker process on the real broker: routing, dead letters, live config changes."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterator
from typing import cast

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from plumbing.kafka.clients import admin_config
from plumbing.kafka.deadletter import parse_dead_letter
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.event_types import SUBSYSTEMS, EventType, subsystem_of
from schemas.ids import delivery_id
from schemas.samples import sample_events
from schemas.serde import Serde
from schemas.webhook import Webhook
from tests.fixtures_streams import (
    TopicReader,
    WorkerProcess,
    delete_webhook,
    make_webhook,
    poison_values,
    produce,
    publish,
    put_webhooks,
    wait_until,
)

CONFIG_DEADLINE_S = 1.0
Headers = list[tuple[str, bytes | None]]  # what confluent-kafka returns for consumed records


@pytest.fixture
def serde(settings: Settings) -> Serde:
    return serde_for(settings)


@pytest.fixture
def deliveries(settings: Settings) -> Iterator[TopicReader]:
    reader = TopicReader(settings, settings.topics.deliveries)
    yield reader
    reader.close()


def tasks_of(reader: TopicReader, serde: Serde, settings: Settings) -> list[DeliveryTask]:
    return [serde.tasks.decode(m.value(), settings.topics.deliveries) for m in reader.messages]


def expected_routes(
    events: list[Event],
    everything: Webhook,
    deploys: Webhook,
    exact: Webhook,
    other_tenant: Webhook,
) -> set[tuple[str, str]]:
    """(webhook id, event id) of every task the router must write for ``events``.

    ``everything`` takes every ten_a event, ``deploys`` the deploy.* ones, ``exact`` two exact
    types, ``other_tenant`` every ten_b event; an inactive webhook takes none.
    """
    expected = set()
    for event in events:
        if event.tenant_id == "ten_b":
            expected.add((other_tenant.id, event.id))
            continue
        expected.add((everything.id, event.id))
        if event.type.startswith("deploy."):
            expected.add((deploys.id, event.id))
        if event.type in ("health.degraded", "quota.exceeded"):
            expected.add((exact.id, event.id))
    return expected


def assert_backlog_routed(
    worker: WorkerProcess,
    deliveries: TopicReader,
    serde: Serde,
    settings: Settings,
    events: list[Event],
    expected: set[tuple[str, str]],
) -> None:
    """Exactly the ``expected`` tasks, each keyed by its webhook, with its id and whole event."""

    def backlog_routed() -> bool:
        worker.stats()  # fails fast if the worker died
        deliveries.poll()
        return len(deliveries.messages) >= len(expected)

    wait_until(backlog_routed, 60, "the backlog's delivery tasks")
    deliveries.read_to_end()
    tasks = tasks_of(deliveries, serde, settings)
    assert {(t.webhook_id, t.event.id) for t in tasks} == expected
    assert len(tasks) == len(expected)
    by_id = {e.id: e for e in events}
    for message, task in zip(deliveries.messages, tasks, strict=True):
        assert message.key() == task.webhook_id.encode()
        assert task.id == delivery_id(task.event.id, task.webhook_id)
        assert task.event == by_id[task.event.id]
        assert task.tenant_id == task.event.tenant_id


def assert_poison_dead_lettered(
    settings: Settings, poison: dict[str, bytes], instance_topic: str
) -> None:
    """One dead letter per poison value, in order, with the value untouched and its reason."""
    dead = TopicReader(settings, settings.topics.events_dlt)
    try:
        wait_until(lambda: len(dead.read_to_end()) >= len(poison), 30, "dead letters")
        letters = [parse_dead_letter(cast(Headers, m.headers())) for m in dead.messages]
        assert len(letters) == len(poison)
        for fragment, letter in zip(poison, letters, strict=True):
            assert fragment in letter.reason
            assert letter.original_topic == instance_topic
            assert letter.source == "streams.router_agent"
        assert [m.value() or b"" for m in dead.messages] == list(poison.values())
    finally:
        dead.close()


def test_routes_all_subsystems_and_dead_letters_poison_records(
    settings: Settings, cli_env: dict[str, str], serde: Serde, deliveries: TopicReader
) -> None:
    everything = make_webhook("ten_a")
    deploys = make_webhook("ten_a", ("deploy.*",))
    exact = make_webhook("ten_a", ("health.degraded", "quota.exceeded"))
    inactive = make_webhook("ten_a", ("*",)).updated(active=False)
    other_tenant = make_webhook("ten_b", ("*",))
    put_webhooks(settings, serde, everything, deploys, exact, inactive, other_tenant)

    # A backlog written before the worker starts: it must load every config before routing.
    instance_topic = settings.topics.events("instance")
    poison = poison_values(serde, instance_topic)
    # Same key as ten_a's instance events: the poison sits in front of them in their partition.
    produce(settings, [(instance_topic, b"ten_a", value) for value in poison.values()])
    events = sample_events("ten_a") + sample_events("ten_b")
    assert {subsystem_of(e.type) for e in events} == set(SUBSYSTEMS)
    publish(settings, serde, events)
    expected = expected_routes(events, everything, deploys, exact, other_tenant)

    worker = WorkerProcess(cli_env, settings)
    try:
        assert_backlog_routed(worker, deliveries, serde, settings, events, expected)
        assert_poison_dead_lettered(settings, poison, instance_topic)
    finally:
        worker.stop()


def test_config_changes_apply_within_a_second(
    settings: Settings, cli_env: dict[str, str], serde: Serde, deliveries: TopicReader
) -> None:
    control = make_webhook("ten_c")  # receives everything: marks how far routing got
    subject = make_webhook("ten_c", ("instance.created",))
    put_webhooks(settings, serde, control)
    worker = WorkerProcess(cli_env, settings)

    def routed_to(event: Event) -> set[str]:
        """Webhooks that got a task for ``event`` (waits for the control's task first)."""

        def control_task() -> bool:
            deliveries.poll()
            return any(
                m.key() == control.id.encode()
                and serde.tasks.decode(m.value(), settings.topics.deliveries).event.id == event.id
                for m in deliveries.messages
            )

        wait_until(control_task, 30, f"the control task of {event.type}")
        deliveries.read_to_end()  # the same batch's other tasks are written too
        return {
            t.webhook_id for t in tasks_of(deliveries, serde, settings) if t.event.id == event.id
        }

    def change_then_route(change: object, event_type: EventType, expect_subject: bool) -> None:
        written_at = time.monotonic()
        if change is None:
            delete_webhook(settings, subject.id)
        else:
            put_webhooks(settings, serde, change)  # type: ignore[arg-type]
        # The promise: any event produced a second after the change is routed by it.
        wait_until(lambda: time.monotonic() - written_at >= CONFIG_DEADLINE_S, 2, "a second")
        event = Event.new(event_type, "ten_c")
        publish(settings, serde, [event])
        assert (subject.id in routed_to(event)) is expect_subject, (change, event_type)

    try:
        wait_until(worker.stats, 60, "the worker's web server")
        probe = Event.new(EventType.INSTANCE_CREATED, "ten_c")
        publish(settings, serde, [probe])
        assert routed_to(probe) == {control.id}
        change_then_route(subject, EventType.INSTANCE_CREATED, True)  # create
        changed = subject.updated(events=("deploy.*",))
        change_then_route(changed, EventType.DEPLOY_FAILED, True)  # update
        change_then_route(changed, EventType.INSTANCE_CREATED, False)  # ...old types are gone
        change_then_route(changed.updated(active=False), EventType.DEPLOY_FAILED, False)
        change_then_route(changed.updated(active=True), EventType.DEPLOY_FAILED, True)
        change_then_route(None, EventType.DEPLOY_FAILED, False)  # tombstone delete
    finally:
        worker.stop()


def limit_record_size(settings: Settings, topic: str, max_bytes: int) -> None:
    """Make the broker refuse records (batches) over ``max_bytes`` on ``topic``."""
    admin = AdminClient(admin_config(settings))
    entry = ConfigEntry(
        "max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_a_task_too_large_for_kafka_dead_letters_its_event_and_the_partition_moves_on(
    settings: Settings, cli_env: dict[str, str], serde: Serde, deliveries: TopicReader
) -> None:
    # The deliveries topic takes records up to 1 KiB: a task carrying a ~1,900-character URL
    # is refused by the broker (MSG_SIZE_TOO_LARGE in the delivery report), a normal one not.
    limit_record_size(settings, settings.topics.deliveries, 1024)
    long_url = "https://example.com/" + "".join(random.choices(string.ascii_letters, k=1900))
    huge = make_webhook("ten_huge", url=long_url)
    normal = make_webhook("ten_ok")
    put_webhooks(settings, serde, huge, normal)
    topic = settings.topics.events("instance")
    big_event = Event.new(EventType.INSTANCE_CREATED, "ten_huge")
    next_event = Event.new(EventType.INSTANCE_CREATED, "ten_ok")
    # Straight to the event topic (past the gateway), the normal one right after.
    publish(settings, serde, [big_event, next_event])

    worker = WorkerProcess(cli_env, settings)
    dead = TopicReader(settings, settings.topics.events_dlt)
    try:

        def routed_and_dead_lettered() -> bool:
            worker.stats()  # fails fast if the worker died
            return bool(deliveries.count() >= 1 and dead.count() >= 1)

        wait_until(routed_and_dead_lettered, 60, "the normal task and the dead letter")
        (task,) = tasks_of(deliveries, serde, settings)
        assert (task.webhook_id, task.event.id) == (normal.id, next_event.id)
        (letter_record,) = dead.read_to_end()
        letter = parse_dead_letter(cast(Headers, letter_record.headers()))
        assert "too large" in letter.reason and huge.id in letter.reason
        assert letter.source == "streams.router_agent"
        assert letter.original_topic == topic
        assert serde.events.decode(letter_record.value(), topic) == big_event
        # The original coordinates: the big event's own record.
        source = TopicReader(settings, topic)
        try:
            originals = {serde.events.decode(m.value(), topic).id: m for m in source.read_to_end()}
        finally:
            source.close()
        original = originals[big_event.id]
        assert (letter.original_partition, letter.original_offset) == (
            original.partition(),
            original.offset(),
        )
        assert worker.stats()["dead_lettered"] == 1  # type: ignore[index]
    finally:
        dead.close()
        worker.stop()
