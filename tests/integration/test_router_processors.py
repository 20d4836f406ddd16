"""Users' processors run in the streams workers beside the router: the examples' tables over
HTTP, a derived Avro topic read as a consumer in another language would, dead letters."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from plumbing.kafka.deadletter import message_headers, parse_dead_letter
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import INSTANCE, new_id
from streams.processors import failure_streak
from tests.fixtures_streams import (
    TopicReader,
    WorkerProcess,
    make_webhook,
    produce,
    publish,
    put_webhooks,
    wait_until,
)


def test_counts_processor_serves_per_tenant_per_type_counts(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    serde = serde_for(settings)
    # An hour-long window, so that the test never straddles a window boundary.
    env = {**cli_env, "CPEVENTS_COUNTS_WINDOW_SECONDS": "3600"}
    worker = WorkerProcess(env, settings, processors=("streams.processors.counts",))
    try:
        wait_until(worker.stats, 60, "the worker")
        publish(
            settings,
            serde,
            [Event.new(EventType.INSTANCE_CREATED, "ten_x") for _ in range(3)]
            + [Event.new(EventType.DEPLOY_FAILED, "ten_x") for _ in range(2)]
            + [Event.new(EventType.DEPLOY_FAILED, "ten_y")],
        )
        expected = {"instance.created": 3, "deploy.failed": 2}

        def counts(tenant: str) -> dict[str, Any] | None:
            worker.stats()  # fails fast if the worker died
            answer = worker.get(f"/counts/{tenant}/")
            return answer["counts"] if answer else None

        wait_until(lambda: counts("ten_x") == expected, 30, f"counts {expected}")
        assert counts("ten_y") == {"deploy.failed": 1}
        assert counts("ten_nobody") == {}
    finally:
        worker.stop()


def test_examples_run_beside_the_router_and_write_what_other_languages_read(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    serde = serde_for(settings)
    put_webhooks(settings, serde, make_webhook("ten_s"))
    processors = ("streams.processors.failure_streak", "streams.processors.lead_time")
    worker = WorkerProcess(cli_env, settings, processors=processors)
    alerts_topic = settings.topic_prefix + failure_streak.OUTPUT
    try:
        wait_until(worker.stats, 60, "the worker")
        instance = new_id(INSTANCE)
        started = Event.new("deploy.started", "ten_s").with_payload({"deploy_id": "d1"})
        succeeded = Event.new("deploy.succeeded", "ten_s").with_payload({"deploy_id": "d1"})
        succeeded = replace(succeeded, timestamp=started.timestamp + timedelta(seconds=42))
        failures = [Event.new("health.failed", "ten_s").with_instance(instance) for _ in range(3)]
        publish(settings, serde, [started, succeeded, *failures])
        produce(settings, [(settings.topics.events("health"), b"ten_s", b"not avro")])

        # The derived record, read with confluent's own deserializer: the schema fetched from
        # the registry by the id in the record, as a Java or Go consumer does.
        alerts = TopicReader(settings, alerts_topic)  # created by the worker at install
        wait_until(alerts.count, 30, "a failure-streak record")
        [message] = alerts.messages
        deserializer = AvroDeserializer(SchemaRegistryClient({"url": settings.schema_registry_url}))
        alert = deserializer(
            message.value(), SerializationContext(alerts_topic, MessageField.VALUE)
        )
        assert message.key() == instance.encode()
        assert alert["instance_id"] == instance and alert["failures"] == 3
        assert alert["last_event_id"] == failures[-1].id
        alerts.close()

        lead_times = wait_until(
            lambda: (
                (worker.get("/lead-times/ten_s/?format=json") or {}).get("deploys") == 1
                and worker.get("/lead-times/ten_s/?format=json")
            ),
            30,
            "the lead-time page",
        )
        assert lead_times["p50_seconds"] == 42.0
        assert worker.get("/failure-streaks/ten_s/")["streaks"] == {}  # alerted, so reset
        # The router beside them routed every good event to the tenant's webhook ...
        wait_until(lambda: (worker.stats() or {}).get("tasks_written") == 5, 30, "5 tasks")

        # ... and dead-lettered the poison record, as did the processor reading its topic (the
        # lead-time processor does not subscribe to health events).
        letters = TopicReader(settings, settings.topics.events_dlt)

        def sources() -> set[str]:
            letters.poll()
            return {parse_dead_letter(message_headers(m)).source for m in letters.messages}

        expected = {"streams.router_agent", "streams.processor:failure-streaks"}
        wait_until(lambda: sources() == expected, 30, f"dead letters from {expected}")
        assert len(letters.messages) == 2
        letters.close()
    finally:
        worker.stop()
