"""``GET /v1/event-types`` and opt-in payload validation on ``POST /v1/events``, through a
gateway on the real broker."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fixtures_gateway import RunningGateway
from tests.fixtures_gateway import gateway as gateway  # fixture

A = RunningGateway.auth("tok-tenant-a")
GOOD = {"resource": "instances", "limit": 10, "used": 11}


async def call(
    gw: RunningGateway, method: str, path: str, body: Any = None, headers: Any = A
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


def quota(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "quota.exceeded", "tenant_id": "ten_a", "payload": payload}


async def test_the_catalog_is_listed_and_declared_payloads_are_validated(
    gateway: RunningGateway,
) -> None:
    status, _ = await call(gateway, "GET", "/v1/event-types", headers={})
    assert status == 401
    status, body = await call(gateway, "GET", "/v1/event-types")
    assert status == 200
    listed = {e["type"]: e for e in body["event_types"]}
    assert listed["quota.exceeded"]["topic"] == gateway.settings.topics.events("admin")
    assert listed["quota.exceeded"]["validate"] is True
    assert listed["quota.exceeded"]["payload_schema"]["type"] == "object"
    assert listed["instance.created"]["description"]

    status, problem = await call(gateway, "POST", "/v1/events", quota({**GOOD, "limit": "ten"}))
    assert status == 422 and problem["field"] == "payload.limit", problem
    status, problem = await call(
        gateway, "POST", "/v1/events", [quota(GOOD), quota({"resource": "x", "limit": 1})]
    )
    assert status == 422 and problem["field"] == "[1].payload.used", problem
    status, accepted = await call(gateway, "POST", "/v1/events", quota(GOOD))
    assert status == 202 and len(accepted["ids"]) == 1
