"""The gateway's /metrics after known requests, and the caller's trace carried from
``POST /v1/events`` into the event records' headers (in-memory span exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plumbing import tracing
from plumbing.metrics import sample_values
from tests.fixtures_gateway import ADMIN_TOKEN, RunningGateway
from tests.fixtures_gateway import gateway as gateway  # fixture
from tests.kafka_helpers import read_all

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("cpevents-gateway", exporter=exporter, env={})
    try:
        yield exporter
    finally:
        tracing.shutdown()


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for found, v in sample_values(text, name)
        if all(found.get(k) == w for k, w in labels.items())
    )


async def test_counts_and_trace_of_posted_events(
    gateway: RunningGateway, spans: InMemorySpanExporter
) -> None:
    auth = RunningGateway.auth(ADMIN_TOKEN)
    event = {"type": "deploy.failed", "tenant_id": "ten_a", "payload": {"why": "oom"}}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(f"{gateway.url}/metrics") as response:
            assert response.status == 200
            before = await response.text()
        caller = {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
        async with http.post(f"{gateway.url}/v1/events", json=[event, event], headers=caller) as r:
            assert r.status == 202, await r.text()
        async with http.post(f"{gateway.url}/v1/events", json={"tenant_id": "ten_a"}) as r:
            assert r.status == 422
        async with http.get(f"{gateway.url}/v1/webhooks/wh_nope") as r:
            assert r.status == 404
        async with http.get(f"{gateway.url}/metrics") as response:
            after = await response.text()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cpevents_gateway_events_accepted_total") == 2
    assert delta("cpevents_gateway_events_refused_total", reason="invalid-field") == 1
    durations = "cpevents_http_request_duration_seconds_count"
    assert delta(durations, service="gateway", route="/v1/events", status="202") == 1
    assert delta(durations, service="gateway", route="/v1/events", status="422") == 1
    assert delta(durations, service="gateway", route="/v1/webhooks/{id}", status="404") == 1

    topic = gateway.settings.topics.for_event_type("deploy.failed")
    records = read_all(gateway.settings, [topic], 2)
    [post] = [s for s in spans.get_finished_spans() if s.name == "POST /v1/events"]
    for record in records:
        traceparent = dict(record.headers() or [])["traceparent"].decode()
        _, trace_id, span_id, _ = traceparent.split("-")
        assert trace_id == TRACE and span_id == f"{post.context.span_id:016x}"
