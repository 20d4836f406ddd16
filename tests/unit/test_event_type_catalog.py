"""The event-type catalog's details (description, payload schema, validate) and the gateway's
opt-in payload validation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from producers.gateway.payloads import PayloadValidator, event_type_list
from producers.gateway.problems import Problem
from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import CATALOG_DIR, EVENT_TYPE_INFO, EventType, load_catalog, type_details
from schemas.samples import sample_events
from schemas.topics import Topics


def test_every_type_has_a_description_and_schemas_are_valid() -> None:
    assert list(EVENT_TYPE_INFO) == [str(t) for t in EventType]
    for name, info in EVENT_TYPE_INFO.items():
        assert info.description, name
        if info.payload_schema is not None:
            Draft202012Validator.check_schema(info.payload_schema)
    assert EVENT_TYPE_INFO["quota.exceeded"].validate


def test_the_samples_conform_to_their_schemas() -> None:
    for event in sample_events():
        schema = EVENT_TYPE_INFO[event.type].payload_schema
        if schema is not None:
            assert not list(Draft202012Validator(schema).iter_errors(event.payload)), event.type


def test_other_languages_still_read_type_to_subsystem() -> None:
    data = json.loads((CATALOG_DIR / "event_types.json").read_text())
    assert all(isinstance(v, str) for v in data["event_types"].values())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nope.x": {}}, "type_details.nope.x"),
        ({"instance.created": {"validate": True}}, "type_details.instance.created.validate"),
        ({"instance.created": {"descr": "x"}}, "type_details.instance.created.descr"),
        ({"instance.created": {"description": 1}}, "type_details.instance.created.description"),
        (
            {"instance.created": {"payload_schema": []}},
            "type_details.instance.created.payload_schema",
        ),
    ],
)
def test_malformed_details_are_refused_naming_the_key(change: dict[str, Any], field: str) -> None:
    catalog = copy.deepcopy(load_catalog("event_types.json"))
    catalog["type_details"].update(change)
    with pytest.raises(ContractError) as caught:
        type_details(catalog)
    assert caught.value.field == field


def test_the_listing_names_each_types_topic() -> None:
    listed = {e["type"]: e for e in event_type_list(Topics(prefix="p."))}
    assert listed["cert.expiring"]["topic"] == "p.events.network"
    assert listed["quota.exceeded"]["validate"] is True
    assert listed["quota.exceeded"]["payload_schema"]["required"] == ["resource", "limit", "used"]
    assert "payload_schema" not in listed["tenant.created"]
    listed["quota.exceeded"]["payload_schema"]["required"].clear()
    assert EVENT_TYPE_INFO["quota.exceeded"].payload_schema["required"]  # type: ignore[index]


def quota(payload: dict[str, Any]) -> Event:
    return Event.new(EventType.QUOTA_EXCEEDED, "ten_a").with_payload(payload)


def refusal(events: list[Event], batch: bool) -> Problem:
    with pytest.raises(Problem) as caught:
        PayloadValidator().check(events, batch)
    assert caught.value.status == 422
    return caught.value


def test_payloads_of_validated_types_are_checked_naming_the_path() -> None:
    good = {"resource": "instances", "limit": 10, "used": 11}
    validator = PayloadValidator()
    validator.check([quota(good)], batch=False)
    assert refusal([quota({**good, "limit": "ten"})], False).field == "payload.limit"
    missing = refusal([quota({"resource": "instances", "used": 1})], False)
    assert missing.field == "payload.limit"
    assert "required" in missing.detail
    assert refusal([quota(good), quota({**good, "used": -1})], True).field == "[1].payload.used"
    # Types without "validate" take any payload, schema or not.
    validator.check(
        [Event.new(EventType.INSTANCE_SCALED, "t").with_payload({"replicas": "x"})], False
    )
    assert validator.validated_types == {"quota.exceeded"}
