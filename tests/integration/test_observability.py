"""Metrics, lag and traces of the delivery worker on the real broker: after a known flow the
counters served on /metrics match what happened, the lag of its group rises while it is
stopped and returns to 0 after, `cpevents status` reads the same story from Kafka, and each
attempt's HTTP request carries the traceparent of the task's trace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import Producer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from delivery.worker import DeliveryWorker, group_id
from plumbing import tracing
from plumbing.kafka.clients import producer_config
from plumbing.kafka.lag import LagCollector, LagReader
from plumbing.metrics import sample_values, serve_metrics
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from tests.conftest import settings_env
from tests.fixtures_delivery import Feeder, Receiver, delivery_settings, eventually
from tests.fixtures_delivery import receiver as receiver  # the fixture


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(DeliveryWorker(settings).run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v
        for found, v in sample_values(text, name)
        if all(found.get(k) == w for k, w in labels.items())
    )


@pytest.fixture
async def metrics_port() -> AsyncIterator[int]:
    runner, port = await serve_metrics("127.0.0.1", 0)
    try:
        yield port
    finally:
        await runner.cleanup()


def delivered(receiver: Receiver, path: str) -> int:
    return len(receiver.at(path))


async def test_counters_match_a_known_flow(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver, metrics_port: int
) -> None:
    # Tiers 50/200/500 ms: a failing task makes 4 attempts (3 retries), then a dead letter.
    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    good = feed.webhook(receiver.script("/ok", default=200))
    bad = feed.webhook(receiver.script("/fail", default=500))
    before = await scrape(metrics_port)
    async with running_worker(settings) as worker:
        feed.tasks(good, 5)
        feed.tasks(bad, 2)

        async def settled() -> bool:
            assert not worker.done(), worker
            text = await scrape(metrics_port)
            return (
                value(text, "cpevents_dead_letters_total", source="delivery")
                - value(before, "cpevents_dead_letters_total", source="delivery")
                >= 2
                and delivered(receiver, "/ok") >= 5
            )

        await eventually(settled, within=60, what="5 deliveries and 2 dead letters")
        await asyncio.sleep(0.3)  # any late count would show now
        after = await scrape(metrics_port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    attempts = "cpevents_delivery_attempts_total"
    assert delta(attempts, outcome="delivered", status_class="2xx") == 5
    assert delta(attempts, outcome="retrying", status_class="5xx") == 6  # 2 tasks x 3 retries
    assert delta(attempts, outcome="dead_lettered", status_class="5xx") == 2
    assert delta(attempts) == 13 == delivered(receiver, "/ok") + delivered(receiver, "/fail")
    assert delta("cpevents_dead_letters_total", source="delivery") == 2
    assert delta("cpevents_delivery_latency_seconds_count") == 5
    assert delta("cpevents_delivery_retry_lateness_seconds_count") == 6
    assert value(after, "cpevents_delivery_requests_in_flight") >= 0

    # `cpevents status` tells the same story from Kafka alone.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cpevents", "status", "--json"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["attempts_last_minute"] == {
        "delivered": 5,
        "retrying": 6,
        "deferred": 0,
        "dead_lettered": 2,
        "disabled": 0,
    }
    assert status["dead_letters"][settings.topics.deliveries_dlt] == 2
    # 8 failures in a row on the receiver's endpoint (/ok and /fail share it), then successes
    # or not depending on the interleaving: only check the shape here.
    assert isinstance(status["open_breakers"], list)
    lags = {(s["group"], s["topic"]): s["lag"] for s in status["lag"]}
    assert lags[(group_id(settings), settings.topics.deliveries)] == 0


async def test_lag_rises_while_the_worker_is_stopped_and_returns_to_zero(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    webhook = feed.webhook(receiver.script("/ok", default=200))
    topics = [settings.topics.deliveries, *(settings.topics.retry(t) for t in settings.retry_tiers)]
    lag = LagCollector(settings, {group_id(settings): topics}, cache=0, reader=LagReader(settings))

    def deliveries_lag() -> int:
        [family] = lag.collect()
        return int(
            sum(s.value for s in family.samples if s.labels["topic"] == settings.topics.deliveries)
        )

    async with running_worker(settings):
        feed.tasks(webhook, 3)
        await eventually(lambda: delivered(receiver, "/ok") == 3, within=60, what="3 deliveries")
        await eventually(lambda: deliveries_lag() == 0, within=30, what="lag 0 after the commit")
    feed.tasks(webhook, 7)  # the worker is stopped: nobody reads them
    assert deliveries_lag() == 7
    async with running_worker(settings):
        await eventually(lambda: deliveries_lag() == 0, within=60, what="lag back to 0")
    assert delivered(receiver, "/ok") == 10


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("cpevents-delivery", exporter=exporter, env={})
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_every_attempt_carries_the_tasks_trace(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    # Fails twice, then delivers: three attempts, the two retries read from the retry tiers.
    webhook = feed.webhook(receiver.script("/flaky", [500, 500], default=200))
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    event = Event.new("instance.created", webhook.tenant_id)
    task = DeliveryTask.for_event(event, webhook.id, webhook.url)
    topic = settings.topics.deliveries
    producer = Producer(producer_config(settings))
    producer.produce(
        topic,
        key=webhook.id,
        value=feed.serde.tasks.encode(task, topic),
        headers=[("traceparent", parent.encode())],
    )
    assert producer.flush(30) == 0
    async with running_worker(settings):
        await eventually(lambda: len(receiver.at("/flaky")) == 3, within=60, what="3 attempts")
    sent = [
        {k.lower(): v for k, v in r.headers.items()}["traceparent"] for r in receiver.at("/flaky")
    ]
    assert all(value.split("-")[1] == trace_id for value in sent), sent
    assert len(set(sent)) == 3  # one span per attempt
    attempts = [s for s in spans.get_finished_spans() if s.name == "POST webhook"]
    assert len(attempts) == 3
    assert {s.context.trace_id for s in attempts} == {int(trace_id, 16)}
    attributes = [dict(s.attributes or {}) for s in attempts]
    assert sorted(str(a["cpevents.attempt"]) for a in attributes) == ["1", "2", "3"]
    assert [a["http.response.status_code"] for a in attributes] == [500, 500, 200]


def test_the_registry_serves_metrics_even_with_an_auth_file(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from registry.server import RegistryThread
    from tests.fixtures_registry import registry_settings
    from tests.integration.test_registry_auth import ADMIN, call, write_auth_file

    auth_file = write_auth_file(tmp_path / "users.json")
    with RegistryThread(registry_settings(kafka_bootstrap, auth_file=auth_file)) as registry:
        schema = json.dumps(
            {"type": "record", "name": "M", "fields": [{"name": "a", "type": "long"}]}
        )
        subject = f"auth-{uuid.uuid4().hex[:8]}-value"
        status, _, _ = call(
            registry.url, "POST", f"/subjects/{subject}/versions", {"schema": schema}, ADMIN
        )
        assert status == 200
        assert call(registry.url, "GET", "/subjects")[0] == 401  # still authenticated
        with urllib.request.urlopen(
            f"{registry.url}/metrics", timeout=10
        ) as reply:  # no credentials
            assert reply.status == 200
            text = reply.read().decode()
    assert value(text, "cpevents_registry_subjects") >= 1
    assert value(text, "cpevents_registry_schemas") >= 1
    route = "/subjects/{subject}/versions"
    posted = value(
        text,
        "cpevents_http_request_duration_seconds_count",
        service="registry",
        route=route,
        method="POST",
        status="200",
    )
    assert posted >= 1
    refused = value(
        text, "cpevents_http_request_duration_seconds_count", service="registry", status="401"
    )
    assert refused >= 1


async def test_a_redriven_delivery_stays_in_its_trace(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    from delivery.dlt_admin import DeadLetterFilter, read_dead_letters, redrive

    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    # 4 failures (the first attempt and 3 retries): dead-lettered; then it answers 200.
    webhook = feed.webhook(receiver.script("/later", [500] * 4, default=200))
    trace_id = uuid.uuid4().hex
    event = Event.new("instance.created", webhook.tenant_id)
    task = DeliveryTask.for_event(event, webhook.id, webhook.url)
    topic = settings.topics.deliveries
    producer = Producer(producer_config(settings))
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode()
    value = feed.serde.tasks.encode(task, topic)
    producer.produce(topic, key=webhook.id, value=value, headers=[("traceparent", traceparent)])
    assert producer.flush(30) == 0
    async with running_worker(settings):
        await eventually(lambda: len(receiver.at("/later")) == 4, within=60, what="4 attempts")

        def dead() -> bool:
            return bool(read_dead_letters(settings, DeadLetterFilter(), timeout=10))

        await eventually(dead, within=30, what="the dead letter")
        records = await asyncio.to_thread(read_dead_letters, settings, DeadLetterFilter())
        assert await asyncio.to_thread(redrive, settings, records) == 1
        await eventually(lambda: len(receiver.at("/later")) == 5, within=60, what="the redrive")
    sent = [
        {k.lower(): v for k, v in r.headers.items()}["traceparent"] for r in receiver.at("/later")
    ]
    assert {value.split("-")[1] for value in sent} == {trace_id}


async def test_kafkabus_publish_continues_the_callers_trace(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    from producers.kafka_bus import KafkaBus
    from tests.kafka_helpers import read_all

    bus = KafkaBus(settings)
    tracer = trace.get_tracer("caller", tracer_provider=tracing._provider)
    before = value(scrape_text(), "cpevents_bus_events_published_total")
    try:
        with tracer.start_as_current_span("handler") as caller:
            await bus.publish(Event.new("instance.created", "ten_bus"))
    finally:
        await bus.close()
    assert value(scrape_text(), "cpevents_bus_events_published_total") - before == 1
    topic = settings.topics.for_event_type("instance.created")
    [record] = await asyncio.to_thread(read_all, settings, [topic], 1)
    traceparent = dict(record.headers() or [])["traceparent"].decode()
    assert traceparent.split("-")[1] == f"{caller.get_span_context().trace_id:032x}"


def scrape_text() -> str:
    from plumbing.metrics import scrape as collect

    return collect().decode()
