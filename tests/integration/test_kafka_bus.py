"""KafkaBus on the real broker: confirmed publish, durable resume, retry then dead letter, the
event size limit and restarts after a consumer failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from plumbing.kafka.deadletter import parse_dead_letter
from plumbing.limits import EventTooLarge
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus, RestartPolicy, RetryPolicy
from schemas.event import Event
from schemas.event_types import EventType
from tests.kafka_helpers import FlakyConsumer, read_all


async def eventually(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def collector(into: list[Event]) -> Callable[[Event], Awaitable[None]]:
    async def handler(event: Event) -> None:
        into.append(event)

    return handler


async def test_publish_is_confirmed_and_lands_on_the_subsystem_topic(settings: Settings) -> None:
    serde = serde_for(settings)
    bus = KafkaBus(settings, serde)
    one = Event.new(EventType.DEPLOY_STARTED, "ten_a").with_payload({"n": 1})
    batch = [Event.new(EventType.HEALTH_FAILED, "ten_b") for _ in range(20)]
    await bus.publish(one)
    assert await bus.publish_many(batch) == batch
    await bus.close()
    # Acknowledged means readable now, with the tenant as key.
    deploy = read_all(settings, [settings.topics.events("deploy")], 1)
    health = read_all(settings, [settings.topics.events("health")], 20)
    assert [serde.events.decode(m.value(), m.topic() or "") for m in deploy] == [one]
    assert deploy[0].key() == b"ten_a"
    assert sorted(e.id for e in (serde.events.decode(m.value(), "") for m in health)) == sorted(
        e.id for e in batch
    )


async def test_subscription_filters_types_and_resumes_after_restart(settings: Settings) -> None:
    serde = serde_for(settings)
    first_run: list[Event] = []
    bus = KafkaBus(settings, serde)
    bus.subscribe(collector(first_run), EventType.INSTANCE_CREATED, name="resume")
    early = [Event.new(EventType.INSTANCE_CREATED, "ten_r") for _ in range(3)]
    other = Event.new(EventType.INSTANCE_STOPPED, "ten_r")
    await bus.publish_many([early[0], other, *early[1:]])
    await eventually(lambda: len(first_run) == 3)
    await bus.close()
    assert first_run == early

    # While the subscriber is down, more events arrive.
    publisher = KafkaBus(settings, serde)
    late = [Event.new(EventType.INSTANCE_CREATED, "ten_r") for _ in range(2)]
    await publisher.publish_many(late)

    second_run: list[Event] = []
    restarted = KafkaBus(settings, serde)
    restarted.subscribe(collector(second_run), EventType.INSTANCE_CREATED, name="resume")
    await eventually(lambda: len(second_run) == 2)
    sentinel = Event.new(EventType.INSTANCE_CREATED, "ten_r")
    await publisher.publish(sentinel)
    await eventually(lambda: len(second_run) == 3)
    await restarted.close()
    await publisher.close()
    # Nothing lost, nothing committed replayed, the filtered type never delivered.
    assert second_run == [*late, sentinel]


async def test_failing_handler_is_retried_then_dead_lettered_and_later_events_flow(
    settings: Settings,
) -> None:
    serde = serde_for(settings)
    attempts: dict[str, int] = {}
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if event.payload.get("poison"):
            raise RuntimeError("cannot handle poison")
        if event.payload.get("flaky") and attempts[event.id] == 1:
            raise ConnectionError("transient")
        handled.append(event)

    bus = KafkaBus(settings, serde, RetryPolicy(max_attempts=3, initial_backoff=0.02))
    bus.subscribe(handler, name="dlt")
    poison = Event.new(EventType.QUOTA_EXCEEDED, "ten_d").with_payload({"poison": True})
    flaky = Event.new(EventType.QUOTA_EXCEEDED, "ten_d").with_payload({"flaky": True})
    after = Event.new(EventType.QUOTA_EXCEEDED, "ten_d")
    await bus.publish_many([poison, flaky, after])
    await eventually(lambda: len(handled) == 2)
    await bus.close()

    assert handled == [flaky, after]
    assert attempts == {poison.id: 3, flaky.id: 2, after.id: 1}
    (parked,) = read_all(settings, [settings.topics.bus_dlt], 1)
    letter = parse_dead_letter(parked.headers())
    assert "cannot handle poison" in letter.reason
    assert "after 3 attempts" in letter.reason
    assert letter.original_topic == settings.topics.events("admin")
    assert letter.source == "bus"
    assert letter.extra["subscription"] == "dlt"
    assert parked.key() == b"ten_d"
    assert serde.events.decode(parked.value(), letter.original_topic) == poison


async def test_undecodable_record_is_parked_and_does_not_stop_the_subscription(
    settings: Settings,
) -> None:
    from confluent_kafka import Producer

    from plumbing.kafka.clients import producer_config

    serde = serde_for(settings)
    topic = settings.topics.events("instance")
    raw = Producer(producer_config(settings))
    raw.produce(topic, key=b"ten_x", value=b"not avro at all")
    assert raw.flush(30) == 0

    handled: list[Event] = []
    bus = KafkaBus(settings, serde)
    bus.subscribe(collector(handled), name="garbage")
    good = Event.new(EventType.INSTANCE_STARTED, "ten_x")
    await bus.publish(good)
    await eventually(lambda: handled == [good])
    await bus.close()
    (parked,) = read_all(settings, [settings.topics.bus_dlt], 1)
    assert parked.value() == b"not avro at all"
    assert "undecodable" in parse_dead_letter(parked.headers()).reason


async def test_event_over_the_size_limit_is_refused_naming_payload_and_nothing_is_sent(
    settings: Settings,
) -> None:
    serde = serde_for(settings)
    bus = KafkaBus(settings, serde)
    ok = Event.new(EventType.DEPLOY_STARTED, "ten_a")
    # 50,000 '<' are 50 KB of JSON but 300 KB encoded (Go-style escaping: \u003c).
    big = Event.new(EventType.DEPLOY_STARTED, "ten_a").with_payload({"html": "<" * 50_000})
    try:
        with pytest.raises(EventTooLarge) as batch_error:
            await bus.publish_many([ok, big])
        assert batch_error.value.field == "[1].payload"
        assert str(settings.max_event_bytes) in batch_error.value.reason
        with pytest.raises(EventTooLarge) as one_error:
            await bus.publish(big)
        assert one_error.value.field == "payload"
        await bus.publish(ok)  # the bus still works
    finally:
        await bus.close()
    (record,) = read_all(settings, [settings.topics.events("deploy")], 2, timeout=5)
    assert serde.events.decode(record.value(), record.topic() or "") == ok


async def test_subscription_restarts_after_a_consumer_failure_and_loses_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    serde = serde_for(settings)
    handled: list[Event] = []
    bus = KafkaBus(
        settings,
        serde,
        restart=RestartPolicy(initial_backoff=0.1, max_backoff=0.5),
        consumer_factory=FlakyConsumer,  # type: ignore[arg-type]  # duck-typed Consumer
    )
    FlakyConsumer.failures = 0
    subscription = bus.subscribe(collector(handled), name="flaky")
    first = Event.new(EventType.INSTANCE_CREATED, "ten_f")
    second = Event.new(EventType.INSTANCE_CREATED, "ten_f")
    try:
        await bus.publish(first)
        await eventually(lambda: handled == [first])
        with caplog.at_level(logging.ERROR, logger="producers.kafka_bus"):
            FlakyConsumer.failures = 2  # two failures in a row, then healthy again
            await eventually(lambda: FlakyConsumer.failures == 0)
            await bus.publish(second)
            await eventually(lambda: second in handled)
        assert subscription.restarts == 2  # type: ignore[attr-defined]
        assert subscription.error is None  # type: ignore[attr-defined]
        assert any("injected poll failure" in r.getMessage() for r in caplog.records)
    finally:
        FlakyConsumer.failures = 0
        await bus.close()
    assert handled == [first, second]  # resumed from the committed offset: no replay, no gap
