"""``--topic deliveries`` (the attempt log) and ``--topic dlt`` (dead-lettered deliveries)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from plumbing.kafka import deadletter
from plumbing.kafka.clients import producer_config
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from tests.fixtures_replay import invoke_replay


def test_attempt_log(settings: Settings) -> None:
    serde = serde_for(settings)
    topic = settings.topics.webhook_deliveries
    hook_a, hook_b = new_id(WEBHOOK), new_id(WEBHOOK)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    records = [
        WebhookDelivery(
            id=f"deli_{index}",
            webhook_id=hook_a if index % 2 else hook_b,
            event_id=f"evt_{index}",
            tenant_id="ten_x" if index < 4 else "ten_y",
            status=DeliveryStatus.RETRYING if index < 5 else DeliveryStatus.DELIVERED,
            attempts=index + 1,
            status_code=503 if index < 5 else 200,
            error="HTTP 503" if index < 5 else None,
            created_at=start,
            updated_at=start + timedelta(seconds=index),
        )
        for index in range(6)
    ]
    producer = Producer(producer_config(settings))
    for index, record in enumerate(records):
        producer.produce(
            topic,
            key=record.id.encode(),
            value=serde.deliveries.encode(record, topic),
            partition=index % 3,
            timestamp=int(record.updated_at.timestamp() * 1000),
        )
    producer.produce(topic, key=b"garbage", value=b"{}", partition=1)
    producer.produce(topic, key=b"deli_gone", value=None, partition=2)  # tombstone
    assert producer.flush(30) == 0

    result = invoke_replay(settings, "--topic", "deliveries", "--since", "1h")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [r.to_json_dict() for r in records]
    assert f"undecodable record {topic}/1@2 skipped" in result.stderr

    only = invoke_replay(
        settings,
        "--topic",
        "deliveries",
        "--webhook",
        hook_a,
        "--tenant",
        "ten_x",
    )
    assert [json.loads(line)["id"] for line in only.stdout.splitlines()] == ["deli_1", "deli_3"]

    refused = invoke_replay(settings, "--topic", "deliveries", "--type", "instance.*")
    assert refused.exit_code == 2 and "--type" in refused.stderr


def test_dead_letters(settings: Settings) -> None:
    serde = serde_for(settings)
    hook = new_id(WEBHOOK)
    source = settings.topics.retry("500ms")
    tasks = [
        DeliveryTask.for_event(
            Event.new(kind, tenant).with_payload({"n": n}), hook, "https://example.com/hook"
        )
        for n, (kind, tenant) in enumerate(
            [
                (EventType.INSTANCE_CREATED, "ten_x"),
                (EventType.DEPLOY_FAILED, "ten_x"),
                (EventType.INSTANCE_FAILED, "ten_y"),
            ]
        )
    ]
    producer = Producer(producer_config(settings))
    dlt = settings.topics.deliveries_dlt
    for offset, task in enumerate(tasks):
        headers: list[tuple[str, str | bytes | None]] = [
            (deadletter.REASON, b"HTTP 400: bad request"),
            (deadletter.ORIGINAL_TOPIC, source.encode()),
            (deadletter.ORIGINAL_PARTITION, b"0"),
            (deadletter.ORIGINAL_OFFSET, str(offset).encode()),
            (deadletter.FAILED_AT, b"1767225600000"),
            (deadletter.SOURCE, b"delivery"),
            ("dlt-status", b"400"),
        ]
        producer.produce(
            dlt,
            key=hook.encode(),
            value=serde.tasks.encode(task, source),
            headers=headers,
            partition=0,
        )
    # A parked value that is no task is still listed (with why), a record that is no dead
    # letter at all is reported and skipped.
    producer.produce(
        dlt,
        key=b"k",
        value=b"junk",
        partition=0,
        headers=[(deadletter.REASON, b"undecodable"), (deadletter.ORIGINAL_TOPIC, source.encode())],
    )
    producer.produce(dlt, key=b"k", value=b"junk", partition=0)
    assert producer.flush(30) == 0

    result = invoke_replay(settings, "--topic", "dlt")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("task", {}).get("id") for line in lines] == [t.id for t in tasks] + [None]
    first = lines[0]
    assert first["reason"] == "HTTP 400: bad request"
    assert (first["original_topic"], first["original_offset"]) == (source, 0)
    assert first["failed_at_ms"] == 1767225600000 and first["extra"] == {"status": "400"}
    assert first["task"]["event"] == tasks[0].event.to_json_dict()
    assert "not Confluent wire format" in lines[3]["task_error"]
    assert f"undecodable record {dlt}/0@4 skipped" in result.stderr

    failed = invoke_replay(settings, "--topic", "dlt", "--type", "*.failed", "--tenant", "ten_x")
    assert [json.loads(x)["task"]["id"] for x in failed.stdout.splitlines()] == [tasks[1].id]
    table = invoke_replay(settings, "--topic", "dlt", "--format", "table")
    assert table.exit_code == 0 and "HTTP 400: bad request" in table.stdout
