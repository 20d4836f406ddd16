from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import new_id

INSTANCE = "inst_01h455vb4pex5vsknk084sn02q"
EVENT_ID = "evt_01h455vb4pex5vsknk084sn02r"

# What Ctrl Plane's Go code marshals for an event.Event: struct fields in declaration order,
# map keys sorted, no spaces, HTML-escaped, RFC 3339 with trailing zeros trimmed.
GO_JSON = (
    '{"id":"evt_01h455vb4pex5vsknk084sn02r","type":"instance.scaled","tenant_id":"ten_42",'
    '"instance_id":"inst_01h455vb4pex5vsknk084sn02q","actor_id":"usr_7",'
    '"payload":{"from":2,"limits":{"cpu":0.5,"mem":"1Gi"},"note":"a \\u003c b \\u0026 c",'
    '"tags":["x",null,true,1.25e-7],"to":5},"timestamp":"2026-11-28T14:03:07.12345Z"}'
)


def test_builder_sets_every_field() -> None:
    event = (
        Event.new(EventType.INSTANCE_CREATED, "ten_1")
        .with_instance(INSTANCE)
        .with_actor("usr_1")
        .with_payload({"replicas": 3})
    )
    assert event.id.startswith("evt_")
    assert event.type is EventType.INSTANCE_CREATED
    assert (event.tenant_id, event.instance_id, event.actor_id) == ("ten_1", INSTANCE, "usr_1")
    assert event.payload == {"replicas": 3}
    assert event.timestamp.tzinfo is UTC
    assert abs(datetime.now(UTC) - event.timestamp) < timedelta(seconds=5)
    assert event.subsystem == "instance"


def test_builder_returns_copies_and_copies_payload_deeply() -> None:
    base = Event.new("deploy.started", "ten_1")
    payload = {"nested": {"list": [1]}}
    built = base.with_payload(payload)
    payload["nested"]["list"].append(2)  # type: ignore[index]
    assert built.payload == {"nested": {"list": [1]}}
    assert base.payload == {}
    assert Event.new("deploy.started", "t").id != Event.new("deploy.started", "t").id


def test_go_json_parses_and_reserializes_identically() -> None:
    event = Event.from_json(GO_JSON)
    assert event.timestamp == datetime(2026, 11, 28, 14, 3, 7, 123450, UTC)
    assert event.payload["note"] == "a < b & c"
    assert event.to_json() == GO_JSON


def test_json_omits_empty_optional_fields_like_go() -> None:
    event = Event(
        EVENT_ID, EventType.QUOTA_EXCEEDED, "ten_1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert event.to_json() == (
        '{"id":"evt_01h455vb4pex5vsknk084sn02r","type":"quota.exceeded","tenant_id":"ten_1",'
        '"timestamp":"2026-01-02T03:04:05Z"}'
    )
    assert Event.from_json(event.to_json()) == event


def test_json_accepts_offsets_and_nanoseconds_and_normalises_to_utc_micros() -> None:
    data = json.loads(GO_JSON)
    data["timestamp"] = "2026-11-28T16:03:07.123456789+02:00"
    event = Event.from_json_dict(data)
    assert event.timestamp == datetime(2026, 11, 28, 14, 3, 7, 123456, UTC)


def test_timezone_is_normalised_on_construction() -> None:
    tz = timezone(timedelta(hours=-5))
    event = Event(EVENT_ID, EventType.TENANT_CREATED, "t", datetime(2026, 1, 1, 7, tzinfo=tz))
    assert event.timestamp == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_avro_record_round_trip_keeps_payload_as_json_text() -> None:
    event = Event.from_json(GO_JSON)
    record = event.to_avro()
    assert isinstance(record["payload"], str)
    assert json.loads(record["payload"]) == event.payload
    assert Event.from_avro(record) == event


@pytest.mark.parametrize(
    ("build", "field", "reason"),
    [
        (lambda: Event.new("instance.exploded", "t"), "type", "unknown event type"),
        (lambda: Event.new("instance.created", ""), "tenant_id", "non-empty"),
        (lambda: Event.new("instance.created", "   "), "tenant_id", "non-empty"),
        (
            lambda: Event.new("instance.created", "t").with_instance(
                "evt_01h455vb4pex5vsknk084sn02q"
            ),
            "instance_id",
            "prefix 'inst_'",
        ),
        (
            lambda: Event.new("instance.created", "t").with_instance("not-an-id"),
            "instance_id",
            "TypeID",
        ),
        (
            lambda: Event.new("instance.created", "t").with_payload({"a": {1, 2}}),
            "payload.a",
            "set",
        ),
        (
            lambda: Event.new("instance.created", "t").with_payload({"a": [float("nan")]}),
            "payload.a[0]",
            "JSON number",
        ),
        (
            lambda: Event.new("instance.created", "t").with_payload({"a": {3: "x"}}),
            "payload.a",
            "keys",
        ),
        (
            lambda: Event.new("instance.created", "t").with_payload({"a": object()}),
            "payload.a",
            "object",
        ),
        (lambda: Event.new("instance.created", "t").with_payload([1]), "payload", "JSON object"),  # type: ignore[arg-type]
        (lambda: Event("bad", EventType.INSTANCE_CREATED, "t", datetime.now(UTC)), "id", "TypeID"),
        (
            lambda: Event(EVENT_ID, EventType.INSTANCE_CREATED, "t", datetime(2026, 1, 1)),
            "timestamp",
            "timezone-aware",
        ),
    ],
)
def test_validation_errors_name_field_and_reason(build, field: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError) as info:
        build()
    assert info.value.field == field
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("tenant_id"), "tenant_id"),
        (lambda d: d.update(type="nope.nope"), "type"),
        (lambda d: d.update(timestamp="yesterday"), "timestamp"),
        (lambda d: d.update(timestamp="2026-02-30T00:00:00Z"), "timestamp"),
        (lambda d: d.update(tenant_id=7), "tenant_id"),
        (lambda d: d.update(payload="{}"), "payload"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.pop("id"), "id"),
    ],
)
def test_json_validation_errors_name_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(GO_JSON)
    mutate(data)
    with pytest.raises(ContractError) as info:
        Event.from_json_dict(data)
    assert info.value.field == field


def test_malformed_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError) as info:
        Event.from_json("{not json")
    assert info.value.field == "body"


def test_new_ids_are_typeids() -> None:
    assert new_id("hook").startswith("hook_")
    assert len(new_id("evt")) == len("evt_") + 26
