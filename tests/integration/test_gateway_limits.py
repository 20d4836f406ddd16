"""The gateway's limits and concurrency rules against the real broker (issue 14): the encoded
event size limit, slow clients, webhooks per tenant, versions with ETag/If-Match and
serialized rotations, and paged delivery queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from schemas.secrets import SecretBox
from schemas.timestamps import utc_now
from schemas.webhook import Webhook
from tests.fixtures_gateway import RunningGateway, run_gateway
from tests.http_probes import slow_header_client
from tests.integration.test_gateway import ADMIN, A, B, call, event_count, event_json
from tests.integration.test_gateway_deliveries import write_log
from tests.kafka_helpers import read_all

HEADER_TIMEOUT = 1.0


@pytest.fixture
def limited(settings: Settings) -> Iterator[RunningGateway]:
    """A gateway with small limits: 1 s to send a request head, 2 webhooks per tenant."""
    base = settings.model_copy(
        update={"gateway_header_timeout": HEADER_TIMEOUT, "max_webhooks_per_tenant": 2}
    )
    with run_gateway(base) as running:
        yield running


async def test_event_encoding_over_the_limit_is_413_naming_payload_and_nothing_is_written(
    limited: RunningGateway,
) -> None:
    # 25,000 '<' are 25 KB of JSON but 150 KB once Go-style escaped (\u003c, six bytes each):
    # two copies are a 50 KB body (under the 64 KiB body limit) over the 256 KiB event limit.
    html = "<" * 25_000
    big = event_json(payload={"a": html, "b": html})
    status, problem = await call(limited, "POST", "/v1/events", A, json=[event_json(), big])
    assert status == 413, problem
    assert problem["field"] == "[1].payload"
    assert str(limited.settings.max_event_bytes) in problem["detail"]
    status, problem = await call(limited, "POST", "/v1/events", A, json=big)
    assert (status, problem["field"]) == (413, "payload")
    assert event_count(limited) == 0
    # Under the limit once encoded: accepted.
    status, _ = await call(limited, "POST", "/v1/events", A, json=event_json(payload={"a": html}))
    assert status == 202


async def test_a_client_sending_headers_slowly_is_cut_off_and_others_are_served(
    limited: RunningGateway,
) -> None:
    host, port = limited.url.removeprefix("http://").split(":")

    async def others_are_served() -> None:
        assert (await call(limited, "GET", "/healthz"))[0] == 200

    elapsed, answer = await slow_header_client(
        host, int(port), 10 * HEADER_TIMEOUT, others_are_served
    )
    assert elapsed < 5 * HEADER_TIMEOUT, f"slow client still connected after {elapsed:.1f}s"
    assert elapsed >= HEADER_TIMEOUT * 0.9
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    assert (await call(limited, "GET", "/healthz"))[0] == 200


async def test_webhooks_per_tenant_are_capped(limited: RunningGateway) -> None:
    hook = {"url": "https://example.test/hook"}
    created = [await call(limited, "POST", "/v1/webhooks", A, json=hook) for _ in range(2)]
    assert [status for status, _ in created] == [201, 201]
    status, problem = await call(limited, "POST", "/v1/webhooks", A, json=hook)
    assert (status, problem["field"]) == (422, "tenant_id")
    assert "2" in problem["detail"]
    assert (await call(limited, "POST", "/v1/webhooks", B, json=hook))[0] == 201  # per tenant
    first = created[0][1]["id"]
    assert (await call(limited, "DELETE", f"/v1/webhooks/{first}", A))[0] == 204
    assert (await call(limited, "POST", "/v1/webhooks", A, json=hook))[0] == 201


async def request(
    gw: RunningGateway, method: str, path: str, headers: dict[str, str], json: Any = None
) -> tuple[int, Any, str | None]:
    """(status, JSON body, ETag header)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.url + path, headers=headers, json=json) as response,
    ):
        body = await response.json(content_type=None) if response.content_length else None
        return response.status, body, response.headers.get("ETag")


async def test_concurrent_rotations_all_land_and_every_returned_secret_is_stored(
    limited: RunningGateway,
) -> None:
    box = SecretBox(limited.settings.secret_key.get_secret_value())  # type: ignore[union-attr]
    status, created, tag = await request(
        limited, "POST", "/v1/webhooks", A, {"url": "https://example.test/hook"}
    )
    assert (status, tag) == (201, '"1"')
    hook = created["id"]
    cap = limited.settings.max_active_secrets
    # As many rotations at once as secrets may be active: each must be stored.
    answers = await asyncio.gather(
        *(request(limited, "POST", f"/v1/webhooks/{hook}/rotate-secret", A) for _ in range(cap))
    )
    assert [status for status, _, _ in answers] == [200] * cap
    returned = {body["secret"] for _, body, _ in answers}
    assert len(returned) == cap
    assert sorted(tag or "" for _, _, tag in answers) == [f'"{v}"' for v in range(2, cap + 2)]

    status, _, tag = await request(limited, "GET", f"/v1/webhooks/{hook}", A)
    assert (status, tag) == (200, f'"{cap + 1}"')
    # Read back from Kafka: the record the router and the delivery worker see.
    stored = await fetch_stored(limited, hook)
    assert stored.version == cap + 1
    active = stored.active_secrets()
    assert len(active) <= cap
    assert {box.decrypt(s.ciphertext) for s in active} == returned


async def fetch_stored(gw: RunningGateway, hook: str) -> Webhook:
    """The newest record of ``hook`` on the webhooks topic."""
    topic = gw.settings.topics.webhooks
    latest = None
    for message in await asyncio.to_thread(read_all, gw.settings, [topic], 10_000, 5):
        if message.key() == hook.encode():
            latest = gw.serde.webhooks.decode(message.value(), topic)
    assert latest is not None, f"{hook} not on {topic}"
    return latest


async def test_if_match_refuses_a_stale_write_with_409_naming_it(limited: RunningGateway) -> None:
    status, created, tag = await request(
        limited, "POST", "/v1/webhooks", A, {"url": "https://example.test/hook"}
    )
    hook = created["id"]
    stale = tag
    assert stale is not None
    path = f"/v1/webhooks/{hook}"
    status, _, tag = await request(limited, "PATCH", path, {**A, "If-Match": stale}, {"events": []})
    assert (status, tag) == (200, '"2"')
    for method, target, body in (
        ("PATCH", path, {"active": False}),
        ("POST", f"{path}/rotate-secret", None),
        ("DELETE", path, None),
    ):
        status, problem, current = await request(
            limited, method, target, {**A, "If-Match": stale}, body
        )
        assert (status, problem["field"], current) == (409, "If-Match", '"2"'), method
    status, updated, tag = await request(
        limited, "PATCH", path, {**A, "If-Match": 'W/"2"'}, {"active": False}
    )
    assert (status, updated["active"], tag) == (200, False, '"3"')
    status, _, tag = await request(limited, "POST", f"{path}/rotate-secret", {**A, "If-Match": "*"})
    assert (status, tag) == (200, '"4"')


async def test_deliveries_are_paged_newest_first_with_an_opaque_cursor(
    limited: RunningGateway,
) -> None:
    hook = new_id(WEBHOOK)
    start = utc_now() - timedelta(hours=1)
    log: list[WebhookDelivery] = []
    for index in range(7):
        tenant = "ten_a" if index < 5 else "ten_b"
        task = DeliveryTask.for_event(
            Event.new(EventType.INSTANCE_FAILED, tenant), hook, "https://a.test/hook"
        )
        state = DeliveryStatus.DELIVERED if index % 2 else DeliveryStatus.RETRYING
        log.append(
            WebhookDelivery(
                id=task.id,
                webhook_id=hook,
                event_id=task.event.id,
                tenant_id=tenant,
                status=state,
                attempts=1,
                updated_at=start + timedelta(seconds=index),
            )
        )
    write_log(limited, log)
    deadline = time.monotonic() + 30
    while len((await call(limited, "GET", "/v1/deliveries", ADMIN))[1]["deliveries"]) < 7:
        assert time.monotonic() < deadline, "attempt log not visible"
        await asyncio.sleep(0.05)

    newest_first = [d.id for d in reversed(log)]
    assert await pages(limited, "limit=3", ADMIN) == [
        newest_first[:3],
        newest_first[3:6],
        [newest_first[6]],
    ]
    tenant_a = [d.id for d in reversed(log) if d.tenant_id == "ten_a"]
    assert await pages(limited, "limit=2", A) == [tenant_a[:2], tenant_a[2:4], tenant_a[4:]]
    delivered_a = [d.id for d in reversed(log[:5]) if d.status == DeliveryStatus.DELIVERED]
    assert await pages(limited, f"limit=1&status=delivered&webhook_id={hook}", A) == [
        [one] for one in delivered_a
    ]
    assert await pages(limited, "", A) == [tenant_a]  # default limit: one page
    code, problem = await call(limited, "GET", "/v1/deliveries?cursor=not-a-cursor", A)
    assert (code, problem["field"]) == (422, "cursor")


async def pages(gw: RunningGateway, query: str, headers: dict[str, str]) -> list[list[str]]:
    """The ids of every page of ``GET /v1/deliveries?query``, following next_cursor."""
    found: list[list[str]] = []
    cursor: str | None = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, body = await call(gw, "GET", f"/v1/deliveries?{query}{suffix}", headers)
        assert status == 200, body
        found.append([d["id"] for d in body["deliveries"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return found
        assert len(found) < 20, "pagination does not end"
