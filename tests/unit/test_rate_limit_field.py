"""The webhook's ``rate_limit`` field: gateway validation naming the key, defaults, updates,
and the record's Avro evolution."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers.gateway.problems import Problem
from producers.gateway.validation import parse_webhook_create, parse_webhook_update
from producers.gateway.webhook_ops import update_webhook
from schemas.avsc import schema_dict
from schemas.ids import WEBHOOK, new_id
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import RateLimit, Webhook

URL = "https://example.com/h"


def test_a_limit_is_parsed_with_a_default_burst() -> None:
    assert parse_webhook_create(
        {"url": URL, "rate_limit": {"per_second": 10, "burst": 20}}
    ).rate_limit == RateLimit(10, 20)
    assert parse_webhook_create(
        {"url": URL, "rate_limit": {"per_second": 2.5}}
    ).rate_limit == RateLimit(2.5, 3)
    assert parse_webhook_create({"url": URL}).rate_limit is None


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        ({"per_second": 0}, "rate_limit.per_second"),
        ({"per_second": "10"}, "rate_limit.per_second"),
        ({"per_second": True}, "rate_limit.per_second"),
        ({"per_second": 10_001}, "rate_limit.per_second"),
        ({"burst": 3}, "rate_limit.per_second"),
        ({"per_second": 10, "burst": 0}, "rate_limit.burst"),
        ({"per_second": 10, "burst": 2.5}, "rate_limit.burst"),
        ({"per_second": 10, "every": 1}, "rate_limit.every"),
        (5, "rate_limit"),
    ],
)
def test_bad_limits_are_refused_naming_the_key(limit: Any, field: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_webhook_create({"url": URL, "rate_limit": limit})
    assert (caught.value.status, caught.value.field) == (422, field)


def test_updates_set_and_remove_the_limit_and_the_record_evolves() -> None:
    webhook = Webhook(id=new_id(WEBHOOK), tenant_id="t", url=URL)
    limited = update_webhook(
        webhook, parse_webhook_update({"rate_limit": {"per_second": 5}}), utc_now()
    )
    assert limited.to_json_dict()["rate_limit"] == {"per_second": 5.0, "burst": 5}
    unlimited = update_webhook(limited, parse_webhook_update({"rate_limit": None}), utc_now())
    assert unlimited.rate_limit is None and "rate_limit" not in unlimited.to_json_dict()

    serde = Serde(f"mock://{uuid.uuid4().hex}")
    assert serde.webhooks.decode(serde.webhooks.encode(limited, "w"), "w") == limited
    older = schema_dict("Webhook")
    new_fields = ("rate_limit", "headers", "filter")
    older["fields"] = [f for f in older["fields"] if f["name"] not in new_fields]
    record = {k: v for k, v in webhook.to_avro().items() if k not in new_fields}
    data = AvroSerializer(serde.client, json.dumps(older))(
        record, SerializationContext("old", MessageField.VALUE)
    )
    assert serde.webhooks.decode(data, "old") == webhook
