"""The whole platform as `cpevents dev up` runs it (one process per service), observed from
outside: its /metrics after a known flow, the dashboard's metrics all served, one trace from the
gateway's POST to the endpoint's traceparent across the router and delivery processes (spans
exported over OTLP/HTTP to a receiver in this test), and the banner's ready-to-copy commands
intact in an 80-column terminal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from cpevents.cli.dev import curl_examples
from cpevents.localkafka.broker import free_port
from plumbing.metrics import sample_values
from schemas.secrets import generate_encryption_key
from tests.fixtures_delivery import Receiver, eventually
from tests.fixtures_delivery import receiver as receiver  # the fixture
from tests.integration.test_dev_stack import _read_until, _stack_env

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "cpevents.json"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[tuple[str, str], ...]  # (trace id, span id)


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes each ExportTraceServiceRequest (protobuf)."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            attributes.get("service.name", ""),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            tuple((k.trace_id.hex(), k.span_id.hex()) for k in span.links),
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def of_trace(self, trace_id: str) -> dict[str, list[ReceivedSpan]]:
        found: dict[str, list[ReceivedSpan]] = defaultdict(list)
        for span in self.spans:
            if span.trace_id == trace_id:
                found[span.service].append(span)
        return found


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def dashboard_metrics() -> set[str]:
    """Every metric name the dashboard's queries use."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bcpevents_[a-z0-9_]+", expr)}


def served_names(text: str) -> set[str]:
    """Metric names a scrape serves (histograms with their _bucket, _count and _sum)."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    return names


def total(texts: dict[str, str], name: str, **labels: str) -> float:
    return sum(
        value
        for text in texts.values()
        for found, value in sample_values(text, name)
        if all(found.get(k) == v for k, v in labels.items())
    )


async def scrape_all(http: aiohttp.ClientSession, urls: list[str]) -> dict[str, str]:
    texts = {}
    for url in urls:
        async with http.get(url) as response:
            assert response.status == 200, url
            texts[url] = await response.text()
    return texts


def check_banner(banner: str, gateway: str, token: str) -> list[str]:
    """The ready-to-copy commands are printed whole at 80 columns; the metrics URLs."""
    lines = banner.splitlines()
    for line in curl_examples(gateway, token, "http://127.0.0.1:9000/hook").splitlines():
        assert line in lines, f"{line!r} folded in:\n{banner}"
    urls = re.findall(r"^\s+(http://\S+/metrics)$", banner, re.MULTILINE)
    assert len(urls) == 4, banner  # registry, gateway, streams, delivery
    return urls


async def known_flow(
    http: aiohttp.ClientSession, gateway: str, receiver: Receiver, traceparent: str
) -> None:
    """Two webhooks (one answering 200, one 500), three events in one traced request, and
    one refused request."""
    for path in ("/ok", "/fail"):
        receiver.script(path, default=200 if path == "/ok" else 500)
        async with http.post(f"{gateway}/v1/webhooks", json={
            "tenant_id": "ten_obs", "url": receiver.url(path), "events": ["deploy.*"],
        }) as response:  # fmt: skip
            assert response.status == 201, await response.text()
    events = [
        {"type": "deploy.failed", "tenant_id": "ten_obs", "payload": {"n": n}} for n in range(3)
    ]
    headers = {"traceparent": traceparent}
    async with http.post(f"{gateway}/v1/events", json=events, headers=headers) as response:
        assert response.status == 202, await response.text()
    async with http.post(f"{gateway}/v1/events", data=b"{") as response:
        assert response.status >= 400  # one refused request, counted


async def settle(
    http: aiohttp.ClientSession, urls: list[str], before: dict[str, str], receiver: Receiver
) -> dict[str, str]:
    """Wait for the flow's 3 deliveries and 3 dead letters, then every lag at 0; the scrapes."""

    async def settled() -> bool:
        texts = await scrape_all(http, urls)
        dead = total(texts, "cpevents_dead_letters_total", source="delivery")
        was = total(before, "cpevents_dead_letters_total", source="delivery")
        return dead - was >= 3 and len(receiver.at("/ok")) >= 3

    await eventually(settled, within=90, what="3 deliveries and 3 dead letters")

    async def lag_zero() -> bool:
        texts = await scrape_all(http, urls)
        lag = "cpevents_consumer_lag_records"
        samples = [v for t in texts.values() for _, v in sample_values(t, lag)]
        return bool(samples) and not any(samples)

    await eventually(lag_zero, within=60, what="every group's lag back to 0")
    return await scrape_all(http, urls)


def check_counters(before: dict[str, str], after: dict[str, str]) -> None:
    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("cpevents_gateway_events_accepted_total") == 3
    assert delta("cpevents_gateway_events_refused_total") == 1
    assert delta("cpevents_router_events_consumed_total") == 3
    assert delta("cpevents_router_tasks_produced_total") == 6
    assert delta("cpevents_router_events_unmatched_total") == 0
    attempts = "cpevents_delivery_attempts_total"
    assert delta(attempts, outcome="delivered", status_class="2xx") == 3
    assert delta(attempts, outcome="retrying", status_class="5xx") == 6
    assert delta(attempts, outcome="dead_lettered", status_class="5xx") == 3
    assert delta("cpevents_dead_letters_total", source="delivery") == 3
    posts = "cpevents_http_request_duration_seconds_count"
    assert delta(posts, service="gateway", route="/v1/events", status="202") == 1
    assert total(after, "cpevents_registry_subjects") >= 1
    # Every metric the dashboard queries is served by the running stack.
    served = set().union(*(served_names(text) for text in after.values()))
    assert dashboard_metrics() - served == set()


async def check_trace(
    otlp: OtlpReceiver, receiver: Receiver, trace_id: str, caller_span: str
) -> None:
    """One trace: caller -> gateway -> router -> delivery -> the endpoint's traceparent."""
    for request in receiver.at("/ok") + receiver.at("/fail"):
        header = {k.lower(): v for k, v in request.headers.items()}["traceparent"]
        assert header.split("-")[1] == trace_id

    def traced() -> bool:
        found = otlp.of_trace(trace_id)
        return (
            len(found["cpevents-gateway"]) == 1
            and len(found["cpevents-delivery"]) == 12  # 3 delivered, 3 x 3 failed attempts
            and bool(routes_linked_to(found["cpevents-gateway"][0]))
        )

    def routes_linked_to(post: ReceivedSpan) -> list[ReceivedSpan]:
        return [
            s
            for s in otlp.spans
            if s.service == "cpevents-router" and (trace_id, post.span_id) in s.links
        ]

    await eventually(traced, within=30, what="spans of every service over OTLP")
    found = otlp.of_trace(trace_id)
    [post] = found["cpevents-gateway"]
    assert post.parent_id == caller_span
    # The router's batch span starts a trace of its own, linked to the events' context; the
    # tasks keep the event's context, so every attempt is a child of the gateway's span.
    assert all(route.trace_id != trace_id for route in routes_linked_to(post))
    assert {s.parent_id for s in found["cpevents-delivery"]} == {post.span_id}


async def test_stack_metrics_dashboard_and_one_trace_end_to_end(
    kafka_bootstrap: str, receiver: Receiver, otlp: OtlpReceiver, tmp_path: Path
) -> None:
    token = f"adm_{uuid.uuid4().hex}"
    env = _stack_env(
        kafka_bootstrap,
        tmp_path,
        CPEVENTS_ADMIN_TOKEN=token,
        CPEVENTS_SECRET_KEY=generate_encryption_key(),
        CPEVENTS_RETRY_TIERS='["100ms", "300ms"]',  # a failing task: 3 attempts, then dead
        CPEVENTS_DELIVERY_BREAKER_FAILURES="1000",
        CPEVENTS_METRICS_LAG_CACHE="0",
        COLUMNS="80",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    env.pop("OTEL_SERVICE_NAME", None)
    gateway_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpevents", "dev", "up",
        "--registry-port", str(free_port()), "--gateway-port", str(gateway_port),
        "--streams-web-port", str(free_port()), "--delivery-web-port", str(free_port()),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        banner = await _read_until(process.stdout, "Ctrl-C stops everything", within=240)
        gateway = f"http://127.0.0.1:{gateway_port}"
        urls = check_banner(banner, gateway, token)
        trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            before = await scrape_all(http, urls)
            await known_flow(http, gateway, receiver, f"00-{trace_id}-{caller_span}-01")
            after = await settle(http, urls, before, receiver)
        check_counters(before, after)
        await check_trace(otlp, receiver, trace_id, caller_span)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        tail = await asyncio.wait_for(process.stdout.read(), timeout=90)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0, tail.decode()
