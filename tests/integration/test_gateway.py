"""The gateway against the real broker: ingest, webhook CRUD, auth, isolation and bad input."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, TopicPartition

from plumbing.kafka.clients import consumer_config
from schemas.event import Event
from schemas.event_types import EventType
from schemas.secrets import SecretBox
from schemas.timestamps import parse_rfc3339
from tests.fixtures_gateway import ADMIN_TOKEN, MAX_BODY, RunningGateway
from tests.fixtures_gateway import gateway as gateway  # fixture
from tests.kafka_helpers import read_all

A = RunningGateway.auth("tok-tenant-a")
B = RunningGateway.auth("tok-tenant-b")
ADMIN = RunningGateway.auth(ADMIN_TOKEN)


async def call(
    gw: RunningGateway,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.url + path, headers=headers, json=json, data=data) as response,
    ):
        body = await response.read()
        if response.content_type in ("application/json", "application/problem+json"):
            return response.status, await response.json(content_type=None)
        return response.status, body


def event_count(gw: RunningGateway) -> int:
    """Records in every event topic (high watermarks)."""
    consumer = Consumer(consumer_config(gw.settings, f"count-{uuid.uuid4().hex}"))
    try:
        total = 0
        for topic in gw.settings.topics.all_events:
            for partition in range(gw.settings.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
                total += high
        return total
    finally:
        consumer.close()


def event_json(tenant: str = "ten_a", **fields: Any) -> dict[str, Any]:
    return {"type": "instance.created", "tenant_id": tenant, **fields}


async def test_post_one_event_and_a_batch(gateway: RunningGateway) -> None:
    event = Event.new(EventType.DEPLOY_SUCCEEDED, "ten_a").with_payload({"sha": "abc"})
    status, body = await call(gateway, "POST", "/v1/events", A, json=event.to_json_dict())
    assert status == 202
    assert body == {"ids": [event.id]}
    (record,) = read_all(gateway.settings, [gateway.settings.topics.events("deploy")], 1)
    assert gateway.serde.events.decode(record.value(), record.topic() or "") == event
    assert record.key() == b"ten_a"

    status, body = await call(
        gateway,
        "POST",
        "/v1/events",
        A,
        json=[
            event_json(),
            event_json(payload={"n": 2}),
            {**event_json(), "type": "cert.expiring"},
        ],
    )
    assert status == 202
    assert len(body["ids"]) == 3 and all(i.startswith("evt_") for i in body["ids"])
    assert event_count(gateway) == 4


async def test_admin_writes_any_tenant_but_a_tenant_only_its_own(gateway: RunningGateway) -> None:
    status, body = await call(
        gateway, "POST", "/v1/events", A, json=[event_json(), event_json("ten_b")]
    )
    assert status == 403
    assert body["field"] == "[1].tenant_id"
    assert event_count(gateway) == 0
    status, _ = await call(gateway, "POST", "/v1/events", ADMIN, json=event_json("ten_z"))
    assert status == 202


@pytest.mark.parametrize(
    ("headers", "kwargs", "status", "field"),
    [
        (A, {"data": b'{"type": "instance.created", ', "ct": "application/json"}, 400, "body"),
        (A, {"json": event_json(type="instance.exploded")}, 422, "type"),
        (A, {"json": {"type": "instance.created"}}, 422, "tenant_id"),
        (A, {"json": [event_json(), {"type": "deploy.started"}]}, 422, "[1].tenant_id"),
        (A, {"json": event_json(instance_id="not-a-typeid")}, 422, "instance_id"),
        (A, {"json": event_json(payload=[1, 2])}, 422, "payload"),
        (A, {"json": event_json(payload={"x": "y" * MAX_BODY})}, 413, "body"),
        (A, {"data": b"type=instance.created", "ct": "text/plain"}, 415, "Content-Type"),
        ({}, {"json": event_json()}, 401, "Authorization"),
        ({"Authorization": "Bearer wrong"}, {"json": event_json()}, 401, "Authorization"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, {"json": event_json()}, 401, "Authorization"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(
    gateway: RunningGateway,
    headers: dict[str, str],
    kwargs: dict[str, Any],
    status: int,
    field: str,
) -> None:
    request_headers = dict(headers)
    if "ct" in kwargs:
        request_headers["Content-Type"] = kwargs.pop("ct")
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url + "/v1/events", headers=request_headers, **kwargs) as response,
    ):
        assert response.status == status
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["status"] == status
    assert problem["field"] == field
    assert problem["detail"]
    assert event_count(gateway) == 0


async def test_webhook_crud_secrets_and_tenant_isolation(gateway: RunningGateway) -> None:
    box = SecretBox(gateway.settings.secret_key.get_secret_value())  # type: ignore[union-attr]
    status, created = await call(
        gateway,
        "POST",
        "/v1/webhooks",
        A,
        json={"url": "https://example.test/hook", "events": ["instance.*", "deploy.failed"]},
    )
    assert status == 201
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert created["tenant_id"] == "ten_a" and created["active"] is True
    hook = created["id"]

    # Read your writes, never the secret; other tenants see nothing.
    assert await call(gateway, "GET", f"/v1/webhooks/{hook}", A) == (200, created)
    assert await call(gateway, "GET", "/v1/webhooks", A) == (200, {"webhooks": [created]})
    assert await call(gateway, "GET", "/v1/webhooks", B) == (200, {"webhooks": []})
    assert (await call(gateway, "GET", f"/v1/webhooks/{hook}", B))[0] == 404
    assert (await call(gateway, "PATCH", f"/v1/webhooks/{hook}", B, json={"active": False}))[
        0
    ] == 404
    assert (await call(gateway, "DELETE", f"/v1/webhooks/{hook}", B))[0] == 404
    assert (await call(gateway, "GET", "/v1/webhooks?tenant_id=ten_a", B))[0] == 403
    status, problem = await call(
        gateway, "POST", "/v1/webhooks", B, json={"tenant_id": "ten_a", "url": "https://x.test"}
    )
    assert (status, problem["field"]) == (403, "tenant_id")
    assert (await call(gateway, "GET", "/v1/webhooks", ADMIN))[1]["webhooks"] == [created]

    status, updated = await call(
        gateway, "PATCH", f"/v1/webhooks/{hook}", A, json={"active": False, "events": []}
    )
    assert status == 200
    assert (updated["active"], updated["events"]) == (False, [])
    assert "secret" not in updated

    status, rotated = await call(gateway, "POST", f"/v1/webhooks/{hook}/rotate-secret", A)
    assert status == 200
    new_secret = rotated.pop("secret")
    assert new_secret.startswith("whsec_") and new_secret != secret

    # On Kafka: encrypted only; the old secret stays valid for the configured overlap.
    records = read_all(gateway.settings, [gateway.settings.topics.webhooks], 3)
    assert len(records) == 3
    for record in records:
        assert secret.encode() not in (record.value() or b"")
        assert new_secret.encode() not in (record.value() or b"")
    stored = gateway.serde.webhooks.decode(records[-1].value(), gateway.settings.topics.webhooks)
    old, new = stored.secrets
    assert [box.decrypt(old.ciphertext), box.decrypt(new.ciphertext)] == [secret, new_secret]
    assert new.expires_at is None
    assert old.expires_at is not None
    assert old.expires_at - parse_rfc3339(rotated["updated_at"], "updated_at") == timedelta(hours=1)

    assert await call(gateway, "DELETE", f"/v1/webhooks/{hook}", A) == (204, b"")
    assert (await call(gateway, "GET", f"/v1/webhooks/{hook}", A))[0] == 404
    tombstone = read_all(gateway.settings, [gateway.settings.topics.webhooks], 4)[-1]
    assert (tombstone.key(), tombstone.value()) == (hook.encode(), None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["instance.*"]}, "url"),
        ({"url": "ftp://example.test"}, "url"),
        ({"url": "https://example.test", "events": ["nope.*"]}, "events[0]"),
        ({"url": "https://example.test", "events": "instance.created"}, "events"),
        ({"url": "https://example.test", "secret": "mine"}, "secret"),
        ({"url": "https://example.test", "active": "yes"}, "active"),
    ],
)
async def test_bad_webhooks_are_refused_naming_the_field(
    gateway: RunningGateway, body: dict[str, Any], field: str
) -> None:
    status, problem = await call(gateway, "POST", "/v1/webhooks", A, json=body)
    assert (status, problem["field"]) == (422, field)
    assert read_all(gateway.settings, [gateway.settings.topics.webhooks], 1, timeout=1) == []


async def test_admin_must_name_the_tenant_of_a_webhook(gateway: RunningGateway) -> None:
    status, problem = await call(
        gateway, "POST", "/v1/webhooks", ADMIN, json={"url": "https://example.test"}
    )
    assert (status, problem["field"]) == (422, "tenant_id")
    status, created = await call(
        gateway,
        "POST",
        "/v1/webhooks",
        ADMIN,
        json={"url": "https://example.test", "tenant_id": "ten_b"},
    )
    assert status == 201 and created["tenant_id"] == "ten_b"
    assert (await call(gateway, "GET", "/v1/webhooks", B))[1]["webhooks"][0]["id"] == created["id"]


async def test_openapi_document_and_unknown_routes(gateway: RunningGateway) -> None:
    from producers.gateway.openapi import document

    assert await call(gateway, "GET", "/openapi.json") == (200, document())
    status, problem = await call(gateway, "GET", "/v1/nothing-here", A)
    assert (status, problem["status"]) == (404, 404)
    status, problem = await call(gateway, "PUT", "/v1/events", A)
    assert (status, problem["status"]) == (405, 405)
