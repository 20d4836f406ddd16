"""Payload filters end to end on the real broker: written through the gateway (422 naming the
path when invalid), applied by a router worker process after the type match, and previewed by
``cpevents replay --webhook … --dry-run``."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask
from tests.fixtures_gateway import RunningGateway
from tests.fixtures_gateway import gateway as gateway  # fixture
from tests.fixtures_replay import invoke_replay
from tests.fixtures_streams import TopicReader, WorkerProcess, wait_until

A = RunningGateway.auth("tok-tenant-a")
FILTER = {"instance_id": {"$exist": True}, "payload": {"region": "eu", "replicas": {"$gte": 3}}}
INSTANCE = "inst_01h455vb4pex5vsknk084sn02q"


async def call(gw: RunningGateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.url + path, headers=A, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


def event(region: str, replicas: int, instance: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "instance.created",
        "tenant_id": "ten_a",
        "payload": {"region": region, "replicas": replicas},
    }
    if instance:
        data["instance_id"] = INSTANCE
    return data


async def test_filters_are_validated_applied_by_the_router_and_previewed(
    gateway: RunningGateway, settings: Settings, cli_env: dict[str, str]
) -> None:
    status, problem = await call(
        gateway,
        "POST",
        "/v1/webhooks",
        {"url": "https://example.com/f", "filter": {"payload": {"replicas": {"$gte": [3]}}}},
    )
    assert status == 422, problem
    assert problem["field"] == "filter.payload.replicas.$gte"
    assert "number or a string" in problem["detail"]

    status, filtered = await call(
        gateway, "POST", "/v1/webhooks", {"url": "https://example.com/f", "filter": FILTER}
    )
    assert status == 201, filtered
    assert filtered["filter"] == FILTER
    status, plain = await call(gateway, "POST", "/v1/webhooks", {"url": "https://example.com/p"})
    assert status == 201 and "filter" not in plain

    worker = WorkerProcess(cli_env, settings)
    deliveries = TopicReader(settings, settings.topics.deliveries)
    try:
        bodies = [event("eu", 3), event("us", 5), event("eu", 2), event("eu", 4, instance=False)]
        status, accepted = await call(gateway, "POST", "/v1/events", bodies)
        assert status == 202, accepted
        ids = accepted["ids"]

        def routed() -> bool:
            worker.stats()  # fails fast if the worker died
            deliveries.poll()
            plain_key = str(plain["id"]).encode()
            return sum(m.key() == plain_key for m in deliveries.messages) >= 4

        wait_until(routed, 60, "the unfiltered webhook's four tasks")
        deliveries.read_to_end()
        tasks = [
            gateway.serde.tasks.decode(m.value(), settings.topics.deliveries)
            for m in deliveries.messages
        ]
        by_webhook: dict[str, list[DeliveryTask]] = {}
        for task in tasks:
            by_webhook.setdefault(task.webhook_id, []).append(task)
        assert sorted(t.event.id for t in by_webhook[plain["id"]]) == sorted(ids)
        # Only eu, at least 3 replicas, with an instance.
        assert [t.event.id for t in by_webhook[filtered["id"]]] == [ids[0]]
    finally:
        deliveries.close()
        worker.stop()

    preview = invoke_replay(settings, "--webhook", filtered["id"], "--dry-run", "--since", "1d")
    assert preview.exit_code == 0, preview.output
    lines = [json.loads(line) for line in preview.stdout.splitlines() if line.startswith("{")]
    assert [line["id"] for line in lines] == [ids[0]]
    assert f"1 of 4 events would have matched {filtered['id']}" in preview.output
