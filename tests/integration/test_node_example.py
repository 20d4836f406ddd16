"""The Node example (kafkajs, @kafkajs/confluent-schema-registry, an lz4 codec from lz4js)
against the real broker and registry: it reads our lz4-compressed events with their
``traceparent`` header, and what it writes (lz4 too) decodes on the Python side.

Like the Go and Java examples it runs in CI: node and npm are required there (``npm ci``
installs the locked dependencies from the npm registry)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.produce import BatchAck, Record
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde
from tests.kafka_helpers import read_all

NODE_DIR = Path(__file__).resolve().parents[2] / "producers" / "examples" / "node"


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The example with its locked dependencies installed (``npm ci``)."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is required (the Node example runs in CI)"
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=NODE_DIR,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return NODE_DIR / "index.js"


def _node(script: Path, *args: str) -> list[dict[str, object]]:
    done = subprocess.run(
        ["node", str(script), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_node_reads_lz4_events_with_their_traceparent(
    node_example: Path, settings: Settings, registry_url: str, kafka_bootstrap: str
) -> None:
    topic = settings.topics.for_event_type(EventType.INSTANCE_CREATED)
    serde = Serde(registry_url)
    events = [
        Event.new(EventType.INSTANCE_CREATED, "ten_node").with_payload({"n": n}) for n in range(3)
    ]
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    producer = Producer(producer_config(settings))  # lz4, as every producer of ours
    assert producer_config(settings)["compression.type"] == "lz4"
    ack = BatchAck("events")
    ack.send_all(
        producer,
        [
            Record(
                topic, b"ten_node", serde.events.encode(e, topic), [("traceparent", traceparent)]
            )
            for e in events
        ],
    )
    ack.wait(producer, 30)

    lines = _node(
        node_example,
        "consume", "--bootstrap", kafka_bootstrap, "--registry", registry_url,
        "--topic", topic, "--group", f"node-{uuid.uuid4().hex[:8]}", "--count", "3",
    )  # fmt: skip
    assert sorted(str(line["event"]["id"]) for line in lines) == sorted(e.id for e in events)  # type: ignore[index]
    assert {line["traceparent"] for line in lines} == {traceparent}
    first = next(line for line in lines if line["event"]["id"] == events[0].id)  # type: ignore[index]
    assert first["event"]["payload"] == {"n": 0}  # type: ignore[index]
    assert first["event"]["tenant_id"] == "ten_node"  # type: ignore[index]


def test_node_writes_lz4_events_python_decodes(
    node_example: Path, settings: Settings, registry_url: str, kafka_bootstrap: str
) -> None:
    topic = settings.topics.for_event_type(EventType.INSTANCE_CREATED)
    serde = Serde(registry_url)
    # Our services register the schema under <topic>-value; the example uses the latest one.
    ours = Event.new(EventType.INSTANCE_CREATED, "ten_node")
    producer = Producer(producer_config(settings))
    ack = BatchAck("events")
    ack.send_all(producer, [Record(topic, b"ten_node", serde.events.encode(ours, topic))])
    ack.wait(producer, 30)
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    sent = _node(
        node_example,
        "produce", "--bootstrap", kafka_bootstrap, "--registry", registry_url,
        "--topic", topic, "--tenant", "ten_node", "--type", "instance.created",
        "--count", "3", "--traceparent", traceparent,
    )  # fmt: skip
    assert len(sent) == 3
    records = read_all(settings, [topic], 4)
    [python_record] = [r for r in records if serde.events.decode(r.value(), topic).id == ours.id]
    records = [r for r in records if r is not python_record]
    decoded = {serde.events.decode(r.value(), topic).id: r for r in records}
    assert set(decoded) == {line["id"] for line in sent}
    for record in records:
        # Same key, same partition as librdkafka chose: a tenant's events keep their order.
        assert record.partition() == python_record.partition()
        event = serde.events.decode(record.value(), topic)
        assert event.tenant_id == "ten_node" and event.payload["from"] == "node"
        assert dict(record.headers() or [])["traceparent"] == traceparent.encode()
        assert record.key() == b"ten_node"
