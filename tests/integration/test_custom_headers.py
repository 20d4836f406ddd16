"""Custom headers end to end on the real broker: written through the gateway (encrypted, names
only in answers), sent by the delivery worker with every attempt, nowhere else."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from delivery.worker import DeliveryWorker
from schemas.delivery_records import DeliveryStatus
from schemas.webhook import Webhook
from tests.fixtures_delivery import Feeder, Receiver, Recorder, delivery_settings, eventually
from tests.fixtures_delivery import receiver as receiver  # the fixture
from tests.fixtures_gateway import RunningGateway, run_gateway

A = RunningGateway.auth("tok-tenant-a")
KEY = "k-live-0123456789abcdef"


async def call(gw: RunningGateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.url + path, headers=A, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_headers_are_sent_with_every_attempt_and_shown_nowhere(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    with run_gateway(settings) as gateway:
        status, problem = await call(
            gateway,
            "POST",
            "/v1/webhooks",
            {"url": receiver.url("/x"), "headers": {"Webhook-Id": "forged"}},
        )
        assert status == 422 and problem["field"] == "headers.Webhook-Id", problem
        url = receiver.script("/keyed", [500], default=200)
        status, created = await call(
            gateway, "POST", "/v1/webhooks", {"url": url, "headers": {"X-Api-Key": KEY}}
        )
        assert status == 201 and created["headers"] == ["X-Api-Key"], created
        status, plain = await call(gateway, "POST", "/v1/webhooks", {"url": receiver.url("/p")})
        assert status == 201 and "headers" not in plain
        status, shown = await call(gateway, "GET", f"/v1/webhooks/{created['id']}")
        assert KEY not in str(shown) and shown["headers"] == ["X-Api-Key"]

    feed = Feeder(settings)
    attempts = Recorder(settings, settings.topics.webhook_deliveries)
    configs = Recorder(settings, settings.topics.webhooks)
    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde=feed.serde).run(stop))
    try:
        keyed = Webhook(id=created["id"], tenant_id="ten_a", url=url)
        other = Webhook(id=plain["id"], tenant_id="ten_a", url=receiver.url("/p"))
        [task] = feed.tasks(keyed)
        feed.tasks(other)

        def delivered() -> bool:
            topic = settings.topics.webhook_deliveries
            statuses = [
                feed.serde.deliveries.decode(m.value(), topic).status
                for m in list(attempts.messages)
                if m.key() == task.id.encode()
            ]
            return DeliveryStatus.DELIVERED in statuses and bool(receiver.at("/p"))

        await eventually(delivered, 30, "the keyed webhook delivered after a retry")
        requests = receiver.at("/keyed")
        assert len(requests) == 2  # the first attempt and its retry both carry the header
        assert all(r.headers["X-Api-Key"] == KEY for r in requests)
        assert "X-Api-Key" not in receiver.at("/p")[0].headers
        # Encrypted at rest, and absent from the attempt log.
        assert all(KEY.encode() not in (m.value() or b"") for m in list(configs.messages))
        assert configs.messages
        assert all(KEY.encode() not in (m.value() or b"") for m in list(attempts.messages))
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        attempts.close()
        configs.close()
        feed.producer.flush(10)
