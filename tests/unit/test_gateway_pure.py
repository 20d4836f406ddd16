"""The gateway's pure parts: auth, validation, problems and webhook operations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from producers.gateway.auth import Principal, TokenAuth
from producers.gateway.problems import Problem
from producers.gateway.validation import (
    check_content_type,
    check_size,
    parse_delivery_query,
    parse_events,
    parse_json,
    parse_webhook_create,
)
from producers.gateway.webhook_ops import create_webhook, rotate_secret
from schemas.secrets import SecretBox, generate_encryption_key
from schemas.timestamps import utc_now

AUTH = TokenAuth.from_settings(SecretStr('{"tok-a": "ten_a"}'), SecretStr("admin"))


def problem(call: Any, *args: Any) -> Problem:
    with pytest.raises(Problem) as info:
        call(*args)
    return info.value


def test_tokens_map_to_tenants_and_admin() -> None:
    assert AUTH.authenticate("Bearer tok-a") == Principal("ten_a")
    assert AUTH.authenticate("bearer admin").is_admin
    for header in (None, "", "Bearer", "Basic tok-a", "Bearer nope"):
        p = problem(AUTH.authenticate, header)
        assert (p.status, p.field) == (401, "Authorization")
        assert "tok-a" not in p.detail
        assert p.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_token_configuration_names_the_variable_not_the_tokens() -> None:
    with pytest.raises(ValueError, match="CPEVENTS_TENANT_TOKENS") as info:
        TokenAuth.from_settings(SecretStr('["secret-token"]'), None)
    assert "secret-token" not in str(info.value)


def test_tenant_scope() -> None:
    tenant, admin = Principal("ten_a"), Principal(None)
    assert tenant.scope(None) == "ten_a" and admin.scope(None) is None
    assert admin.scope("ten_b") == "ten_b"
    p = problem(tenant.scope, "ten_b")
    assert (p.status, p.field) == (403, "tenant_id")


def test_content_type_size_and_json() -> None:
    check_content_type("application/json; charset=utf-8")
    check_content_type("application/cloudevents+json")
    assert problem(check_content_type, "text/plain").status == 415
    assert problem(check_content_type, None).field == "Content-Type"
    check_size(10, 10)
    assert (problem(check_size, 11, 10).status, problem(check_size, 11, 10).field) == (413, "body")
    p = problem(parse_json, b"{nope")
    assert (p.status, p.field) == (400, "body")


def test_events_one_or_batch_with_defaults_and_located_errors() -> None:
    (one,) = parse_events({"type": "instance.created", "tenant_id": "ten_a"})
    assert one.id.startswith("evt_") and one.timestamp.tzinfo is not None
    assert len(parse_events([{"type": "quota.exceeded", "tenant_id": "t"}] * 3)) == 3
    cases = [
        ({"type": "nope", "tenant_id": "t"}, "type"),
        ({"type": "instance.created"}, "tenant_id"),
        ({"type": "instance.created", "tenant_id": ""}, "tenant_id"),
        ({"type": "instance.created", "tenant_id": "t", "extra": 1}, "extra"),
        ([{"type": "instance.created", "tenant_id": "t"}, {"tenant_id": "t"}], "[1].type"),
        ([], "body"),
        ("text", "body"),
        ({"type": "webhook.disabled", "tenant_id": "t"}, "type"),  # the worker's own, unforgeable
        (
            [
                {"type": "instance.created", "tenant_id": "t"},
                {"type": "webhook.disabled", "tenant_id": "t"},
            ],
            "[1].type",
        ),
    ]
    for body, field in cases:
        p = problem(parse_events, body)
        assert (p.status, p.field) == (422, field), body
        assert p.body()["field"] == field and p.body()["status"] == 422


def test_webhook_bodies() -> None:
    create = parse_webhook_create({"url": "https://x.test/h", "events": ["deploy.*", "*"]})
    assert create.events == ("deploy.*", "*") and create.active and create.tenant_id is None
    for body, field in [
        ({"url": "https://x.test", "events": ["instance.created", "bogus.*"]}, "events[1]"),
        ({"url": "mailto:a@b"}, "url"),
        ({"url": "https://x.test:99999"}, "url"),
        ({"url": "https://x.test", "tenant_id": ""}, "tenant_id"),
    ]:
        assert problem(parse_webhook_create, body).field == field


def test_delivery_query() -> None:
    query = parse_delivery_query({"status": "delivered", "limit": "5", "event_id": "evt_x"})
    assert (query.status, query.limit, query.event_id) == ("delivered", 5, "evt_x")
    assert problem(parse_delivery_query, {"limit": "0"}).field == "limit"
    assert problem(parse_delivery_query, {"colour": "red"}).field == "colour"


def test_rotation_keeps_the_old_secret_for_the_overlap_only() -> None:
    box = SecretBox(generate_encryption_key())
    now = utc_now()
    webhook, first = create_webhook(
        parse_webhook_create({"url": "https://x.test"}), "ten_a", box, now
    )
    rotated, second = rotate_secret(webhook, box, timedelta(hours=2), now)
    assert [box.decrypt(s.ciphertext) for s in rotated.active_secrets(now)] == [first, second]
    later = now + timedelta(hours=3)
    assert [box.decrypt(s.ciphertext) for s in rotated.active_secrets(later)] == [second]
    again, third = rotate_secret(rotated, box, timedelta(hours=2), later)
    assert [box.decrypt(s.ciphertext) for s in again.secrets] == [second, third]
    immediate, fourth = rotate_secret(again, box, timedelta(0), later)
    assert [box.decrypt(s.ciphertext) for s in immediate.secrets] == [fourth]
    assert first not in repr(rotated)
