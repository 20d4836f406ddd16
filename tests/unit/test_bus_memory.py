from __future__ import annotations

import logging

import pytest

from producers.app import App, with_event_bus
from producers.bus import Bus
from producers.memory_bus import BusClosedError, MemoryBus
from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import EventType


def event(event_type: EventType = EventType.INSTANCE_CREATED, tenant: str = "ten_1") -> Event:
    return Event.new(event_type, tenant)


async def test_handlers_run_in_subscription_order() -> None:
    bus = MemoryBus()
    calls: list[str] = []

    async def first(e: Event) -> None:
        calls.append("first")

    async def second(e: Event) -> None:
        calls.append("second")

    async def third(e: Event) -> None:
        calls.append("third")

    bus.subscribe(second)
    bus.subscribe(first)
    bus.subscribe(third)
    await bus.publish(event())
    assert calls == ["second", "first", "third"]


async def test_type_filters_and_all_types() -> None:
    bus = MemoryBus()
    created: list[Event] = []
    deploys: list[Event] = []
    everything: list[Event] = []

    async def on_created(e: Event) -> None:
        created.append(e)

    async def on_deploy(e: Event) -> None:
        deploys.append(e)

    async def on_all(e: Event) -> None:
        everything.append(e)

    bus.subscribe(on_created, EventType.INSTANCE_CREATED)
    bus.subscribe(on_deploy, "deploy.started", EventType.DEPLOY_FAILED)
    bus.subscribe(on_all)
    a, b, c = (
        event(EventType.INSTANCE_CREATED),
        event(EventType.DEPLOY_FAILED),
        event(EventType.HEALTH_PASSED),
    )
    for e in (a, b, c):
        await bus.publish(e)
    assert created == [a]
    assert deploys == [b]
    assert everything == [a, b, c]


def test_subscribing_to_an_unknown_type_names_the_field() -> None:
    async def handler(e: Event) -> None:
        pass

    with pytest.raises(ContractError) as info:
        MemoryBus().subscribe(handler, "instance.exploded")
    assert info.value.field == "types"


async def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    bus = MemoryBus()
    seen: list[Event] = []

    async def handler(e: Event) -> None:
        seen.append(e)

    subscription = bus.subscribe(handler)
    first = event()
    await bus.publish(first)
    subscription.unsubscribe()
    subscription.unsubscribe()
    await bus.publish(event())
    assert seen == [first]
    assert not subscription.active


async def test_unsubscribe_while_publishing_is_safe() -> None:
    bus = MemoryBus()
    calls: list[str] = []
    subscriptions = {}

    async def once(e: Event) -> None:
        calls.append("once")
        subscriptions["once"].unsubscribe()

    async def removes_later(e: Event) -> None:
        calls.append("remover")
        subscriptions["later"].unsubscribe()

    async def later(e: Event) -> None:
        calls.append("later")

    async def adds_new(e: Event) -> None:
        calls.append("adder")
        bus.subscribe(later, name="added-during-publish")

    subscriptions["once"] = bus.subscribe(once)
    subscriptions["remover"] = bus.subscribe(removes_later)
    subscriptions["later"] = bus.subscribe(later)
    bus.subscribe(adds_new)
    await bus.publish(event())
    # "later" was unsubscribed before its turn; the handler added during delivery waits for
    # the next event.
    assert calls == ["once", "remover", "adder"]
    calls.clear()
    await bus.publish(event())
    assert calls == ["remover", "adder", "later"]


async def test_a_failing_handler_is_logged_and_others_still_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MemoryBus()
    seen: list[Event] = []

    async def broken(e: Event) -> None:
        raise RuntimeError("boom")

    async def healthy(e: Event) -> None:
        seen.append(e)

    bus.subscribe(broken)
    bus.subscribe(healthy)
    published = event()
    with caplog.at_level(logging.ERROR, logger="producers.memory_bus"):
        await bus.publish(published)
    assert seen == [published]
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert published.id in caplog.text


async def test_history_is_bounded_and_filterable() -> None:
    bus = MemoryBus(history=5)
    events = [
        event(EventType.INSTANCE_CREATED if i % 2 else EventType.DEPLOY_STARTED) for i in range(8)
    ]
    for e in events:
        await bus.publish(e)
    assert bus.recent_events(100) == events[-5:]
    assert bus.recent_events(2) == events[-2:]
    assert bus.recent_events(10, EventType.INSTANCE_CREATED) == [
        e for e in events[-5:] if e.type == EventType.INSTANCE_CREATED
    ]
    assert bus.recent_events(0) == []


async def test_closed_bus_refuses_events() -> None:
    bus = MemoryBus()
    await bus.close()
    with pytest.raises(BusClosedError):
        await bus.publish(event())


async def test_app_uses_the_memory_bus_by_default_and_accepts_another() -> None:
    app = App()
    assert isinstance(app.events, MemoryBus)
    other: Bus = MemoryBus(history=3)
    assert App(event_bus=other).events is other
    assert App.new(with_event_bus(other)).events is other
    seen: list[Event] = []

    async def handler(e: Event) -> None:
        seen.append(e)

    app.events.subscribe(handler)
    published = event()
    await app.events.publish(published)
    await app.close()
    assert seen == [published]
