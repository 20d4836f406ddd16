"""The Java example (kafka-clients + Apache Avro, wire format framed by hand) against the real
broker and registry: its events decode on the Python side exactly as it sent them."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from plumbing.kafka.clients import producer_config
from plumbing.settings import Settings
from schemas.avsc import schema_str
from schemas.event import Event
from schemas.event_types import CATALOG_DIR
from schemas.serde import Serde
from tests.kafka_helpers import read_all

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "producers" / "examples" / "java"
JAR = PROJECT / "target" / "cpevents-java-producer-0.1.0.jar"
MAIN = "io.ctrlplane.examples.ProduceEvents"


@pytest.fixture(scope="session")
def java_classpath() -> str:
    """Build the example once per session with Maven (dependencies from Maven Central)."""
    subprocess.run(["mvn", "-q", "-B", "package"], cwd=PROJECT, check=True, timeout=600)
    return os.pathsep.join([str(JAR), str(PROJECT / "target" / "dependency" / "*")])


def test_java_events_decode_identically_in_python(
    java_classpath: str, registry_url: str, kafka_bootstrap: str, settings: Settings
) -> None:
    schema_file = ROOT / "schemas" / "avro" / "event.avsc"
    assert json.loads(schema_file.read_text()) == json.loads(schema_str("Event"))
    run = subprocess.run(
        [
            "java",
            "-cp",
            java_classpath,
            MAIN,
            "--bootstrap",
            kafka_bootstrap,
            "--registry",
            registry_url,
            "--schema",
            str(schema_file),
            "--catalog",
            str(CATALOG_DIR / "event_types.json"),
            "--topic-prefix",
            settings.topic_prefix,
            "--tenant",
            "ten_java",
            "--type",
            "deploy.rolled_back",
            "--count",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    sent = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(sent) == 3

    topic = settings.topics.events("deploy")
    records = read_all(settings, [topic], 3)
    serde = Serde(registry_url)
    decoded = {
        (r.partition(), r.offset()): (r.key(), serde.events.decode(r.value(), topic))
        for r in records
    }
    for line in sent:
        assert line["topic"] == topic
        key, event = decoded[(line["partition"], line["offset"])]
        expected = Event(
            id=line["id"],
            type=line["type"],
            tenant_id=line["tenant_id"],
            instance_id=line["instance_id"],
            actor_id=line["actor_id"],
            payload=line["payload"],
            timestamp=datetime(1970, 1, 1, tzinfo=UTC)
            + timedelta(microseconds=line["timestamp_micros"]),
        )
        assert key == b"ten_java"
        assert event == expected
        assert event.to_json() == expected.to_json()
        assert event.payload["note"] == "café ✓ <&>"
    # Same key, same partition as librdkafka (our producers) chooses: a tenant's events keep
    # their order whichever language wrote them. (Kafka's Java default, murmur2, puts
    # "ten_java" on another of the 3 partitions.)
    assert {line["partition"] for line in sent} == {librdkafka_partition(settings, topic)}


def librdkafka_partition(settings: Settings, topic: str) -> int:
    """The partition our producers give the key ``ten_java`` on ``topic``."""
    producer = Producer(producer_config(settings))
    placed: list[int] = []
    producer.produce(
        topic,
        key=b"ten_java",
        value=b"",
        on_delivery=lambda _e, msg: placed.append(msg.partition()),
    )
    producer.flush(30)
    return placed[0]
