"""Routing one record: tasks for matching webhooks, dead-letter reasons, stable delivery ids."""

from __future__ import annotations

import socket
import uuid
from types import SimpleNamespace
from typing import cast

import pytest
from confluent_kafka import Message

from plumbing.kafka.deadletter import dead_letter_headers, parse_dead_letter
from schemas.ids import delivery_id
from schemas.samples import sample_events
from schemas.serde import Serde
from schemas.topics import Topics
from streams.fanout import RegistryUnavailable, Router
from streams.faust_record import FaustRecord
from streams.matching import WebhookIndex
from tests.fixtures_streams import make_webhook, poison_values

TOPICS = Topics(prefix="unit.")


@pytest.fixture
def serde() -> Serde:
    return Serde(f"mock://{uuid.uuid4().hex}")


def test_routes_each_event_to_the_tenants_matching_webhooks(serde: Serde) -> None:
    everything = make_webhook("ten_a")
    deploys = make_webhook("ten_a", ("deploy.*",), url="https://example.com/deploys")
    other_tenant = make_webhook("ten_b")
    router = Router(serde, WebhookIndex([everything, deploys, other_tenant]), TOPICS.deliveries)

    for event in sample_events("ten_a"):
        topic = TOPICS.for_event_type(event.type)
        routed = router.route(topic, serde.events.encode(event, topic))
        assert routed.dead_letter_reason is None
        expected = {everything.id} | ({deploys.id} if event.type.startswith("deploy.") else set())
        assert {t.key.decode() for t in routed.tasks} == expected
        for record in routed.tasks:
            task = serde.tasks.decode(record.value, TOPICS.deliveries)
            assert task.id == record.task_id == delivery_id(event.id, task.webhook_id)
            assert task.event == event
            assert task.tenant_id == "ten_a"
            assert task.url == (deploys.url if task.webhook_id == deploys.id else everything.url)


def test_reprocessing_yields_the_same_delivery_ids(serde: Serde) -> None:
    router = Router(serde, WebhookIndex([make_webhook("ten_a")]), TOPICS.deliveries)
    event = sample_events("ten_a")[0]
    topic = TOPICS.for_event_type(event.type)
    value = serde.events.encode(event, topic)
    first, second = router.route(topic, value), router.route(topic, value)
    assert [t.task_id for t in first.tasks] == [t.task_id for t in second.tasks]


def test_event_without_subscribers_yields_no_task(serde: Serde) -> None:
    router = Router(serde, WebhookIndex([make_webhook("ten_b")]), TOPICS.deliveries)
    event = sample_events("ten_a")[0]
    topic = TOPICS.for_event_type(event.type)
    routed = router.route(topic, serde.events.encode(event, topic))
    assert routed.tasks == () and routed.dead_letter_reason is None


def test_undecodable_records_get_a_dead_letter_reason(serde: Serde) -> None:
    router = Router(serde, WebhookIndex([make_webhook("ten_poison")]), TOPICS.deliveries)
    topic = TOPICS.events("instance")
    for fragment, value in poison_values(serde, topic).items():
        routed = router.route(topic, value)
        assert routed.tasks == ()
        assert routed.dead_letter_reason is not None
        assert fragment in routed.dead_letter_reason, (fragment, routed.dead_letter_reason)


def test_registry_outage_is_not_a_poison_record() -> None:
    # Encoded against one registry, decoded through a registry nobody listens on.
    writer = Serde(f"mock://{uuid.uuid4().hex}")
    event = sample_events("ten_a")[0]
    topic = TOPICS.for_event_type(event.type)
    value = writer.events.encode(event, topic)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reader = Serde(f"http://127.0.0.1:{port}")
    router = Router(reader, WebhookIndex([make_webhook("ten_a")]), TOPICS.deliveries)
    with pytest.raises(RegistryUnavailable):
        router.route(topic, value)


def test_faust_message_coordinates_feed_the_dead_letter_headers() -> None:
    message = SimpleNamespace(
        topic="unit.events.instance",
        partition=2,
        offset=41,
        timestamp=1_700_000_000.5,
        headers=[("traceparent", b"00-abc")],
    )
    headers = dead_letter_headers(
        cast(Message, FaustRecord(message)), "bad bytes", "streams.router_agent", 5
    )
    parsed = parse_dead_letter(headers)
    assert (parsed.reason, parsed.source) == ("bad bytes", "streams.router_agent")
    assert (parsed.original_topic, parsed.original_partition, parsed.original_offset) == (
        "unit.events.instance",
        2,
        41,
    )
    assert ("traceparent", b"00-abc") in headers
