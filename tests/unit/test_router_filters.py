"""Payload filters in routing: after the type match, compiled once, no work without filters;
the webhook record's filter field (Avro evolution, JSON form) and the gateway's validation."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers.gateway.problems import Problem
from producers.gateway.validation import parse_webhook_create, parse_webhook_update
from producers.gateway.webhook_ops import create_webhook, rotate_secret, update_webhook
from schemas import filters
from schemas.avsc import schema_dict
from schemas.errors import ContractError
from schemas.event import Event
from schemas.ids import WEBHOOK, new_id
from schemas.secrets import SecretBox, generate_encryption_key
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.topics import Topics
from schemas.webhook import Webhook
from streams import matching
from streams.fanout import Router
from streams.matching import WebhookIndex

TOPICS = Topics(prefix="unit.")
EU = {"payload": {"region": "eu", "replicas": {"$gte": 3}}}


def hook(tenant: str = "ten_a", filter_: Any = None, events: tuple[str, ...] = ()) -> Webhook:
    text = None if filter_ is None else filters.filter_text(filter_)
    return Webhook(
        id=new_id(WEBHOOK),
        tenant_id=tenant,
        url="https://example.com/hook",
        events=events,
        filter_json=text,
    )


def event(region: str = "eu", replicas: int = 3, tenant: str = "ten_a") -> Event:
    return (
        Event.new("instance.created", tenant)
        .with_instance(new_id("inst"))
        .with_payload({"region": region, "replicas": replicas})
    )


@pytest.fixture
def serde() -> Serde:
    return Serde(f"mock://{uuid.uuid4().hex}")


def test_filters_apply_after_the_type_match() -> None:
    plain, eu, deploys_eu = hook(), hook(filter_=EU), hook(filter_=EU, events=("deploy.*",))
    index = WebhookIndex([plain, eu, deploys_eu])
    assert index.match_event(event()) == [plain, eu]
    assert index.match_event(event(region="us")) == [plain]
    assert index.match_event(event(replicas=2)) == [plain]
    assert index.match_event(event(tenant="ten_b")) == []


def test_a_changed_or_removed_filter_takes_effect() -> None:
    webhook = hook(filter_=EU)
    index = WebhookIndex([webhook])
    assert index.match_event(event(region="us")) == []
    changed = webhook.updated(filter_json=filters.filter_text({"payload": {"region": "us"}}))
    index.put(changed)
    assert index.match_event(event(region="us")) == [changed]
    unfiltered = changed.updated(filter_json=None)
    index.put(unfiltered)
    assert index.match_event(event(region="ap")) == [unfiltered]


def test_no_document_is_built_unless_a_matching_webhook_has_a_filter() -> None:
    built: list[Event] = []

    def document(e: Event) -> dict[str, Any]:
        built.append(e)
        return matching.event_document(e)

    deploys_only = hook(filter_=EU, events=("deploy.*",))
    index = WebhookIndex([hook(), hook(), deploys_only])
    assert len(index.match_event(event(), document)) == 2
    assert built == []  # the only filtered webhook does not take this type
    index.put(hook(filter_=EU))
    index.put(hook(filter_={"instance_id": {"$exist": True}}))
    assert len(index.match_event(event(), document)) == 4
    assert len(built) == 1  # two filters, one document


def test_the_router_parses_no_json_beyond_the_decoder(
    serde: Serde, monkeypatch: pytest.MonkeyPatch
) -> None:
    eu = hook(filter_=EU)
    router = Router(serde, WebhookIndex([hook(), eu]), TOPICS.deliveries)
    topic = TOPICS.for_event_type("instance.created")
    values = [serde.events.encode(event(region), topic) for region in ("eu", "us")]
    router.route(topic, values[0])  # schema lookups (JSON of their own) happen once, first
    loads: list[object] = []
    real_loads = json.loads

    def counting_loads(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_loads(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    routed = [router.route(topic, value) for value in values]
    assert [len(r.tasks) for r in routed] == [2, 1]
    assert eu.id.encode() in {t.key for t in routed[0].tasks}
    assert loads == []  # the payload parsed by decoding is reused, not parsed again


def test_an_event_document_is_the_json_form() -> None:
    e = event()
    assert matching.event_document(e) == json.loads(e.to_json())


# -- the webhook record ------------------------------------------------------------------


def test_old_webhook_records_still_decode(serde: Serde) -> None:
    older = schema_dict("Webhook")
    older["fields"] = [f for f in older["fields"] if f["name"] != "filter"]
    webhook = hook()
    record = {k: v for k, v in webhook.to_avro().items() if k != "filter"}
    data = AvroSerializer(serde.client, json.dumps(older))(
        record, SerializationContext("old", MessageField.VALUE)
    )
    decoded = serde.webhooks.decode(data, "old")
    assert decoded == webhook
    assert decoded.filter_json is None


def test_a_filter_round_trips_through_avro_and_shows_in_json(serde: Serde) -> None:
    webhook = hook(filter_=EU)
    decoded = serde.webhooks.decode(serde.webhooks.encode(webhook, "w"), "w")
    assert decoded == webhook
    assert decoded.payload_filter == EU
    assert webhook.to_json_dict()["filter"] == EU
    assert "filter" not in hook().to_json_dict()  # absent when unset (Go's omitempty)


def test_a_record_with_a_bad_filter_is_refused_naming_it() -> None:
    with pytest.raises(ContractError) as caught:
        hook().updated(filter_json='{"payload": {"x": {"$like": 1}}}')
    assert caught.value.field == "filter.payload.x.$like"


# -- the gateway ------------------------------------------------------------------------


def test_the_gateway_refuses_bad_filters_naming_the_path() -> None:
    with pytest.raises(Problem) as caught:
        parse_webhook_create(
            {"url": "https://example.com/h", "filter": {"payload": {"replicas": {"$gte": [3]}}}}
        )
    assert caught.value.status == 422
    assert caught.value.field == "filter.payload.replicas.$gte"
    with pytest.raises(Problem) as too_deep:
        nested: dict[str, Any] = {"x": 1}
        for _ in range(filters.MAX_DEPTH):
            nested = {"a": nested}
        parse_webhook_update({"filter": nested})
    assert "too deep" in too_deep.value.detail


def test_create_update_and_rotate_keep_the_filter() -> None:
    box = SecretBox(generate_encryption_key())
    created, _ = create_webhook(
        parse_webhook_create({"url": "https://example.com/h", "filter": EU}),
        "ten_a",
        box,
        utc_now(),
    )
    assert created.payload_filter == EU
    renamed = update_webhook(
        created, parse_webhook_update({"url": "https://x.example/h"}), utc_now()
    )
    assert renamed.payload_filter == EU and renamed.version == created.version + 1
    rotated, _ = rotate_secret(renamed, box, timedelta(hours=1), utc_now())
    assert rotated.payload_filter == EU
    cleared = update_webhook(rotated, parse_webhook_update({"filter": None}), utc_now())
    assert cleared.filter_json is None
