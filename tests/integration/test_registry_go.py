"""A Go program (confluent-kafka-go v2 and its Schema Registry Avro serde) and the Python side
exchange events through Kafka and our registry, each decoding what the other wrote."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.settings import Settings
from schemas.avsc import AVRO_DIR
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde

GO_DIR = Path(__file__).resolve().parents[2] / "producers" / "examples" / "go"
# First run downloads modules from the Go proxy and compiles librdkafka bindings (CGO):
# minutes on a cold cache, seconds afterwards (the default GOPATH caches both).
BUILD_TIMEOUT = 900


@pytest.fixture(scope="module")
def go_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("go") / "cpevents-go"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "1"}
    built = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=GO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert built.returncode == 0, f"go build failed:\n{built.stderr}"
    return binary


def _event() -> Event:
    return (
        Event.new(EventType.INSTANCE_SCALED, f"ten_{uuid.uuid4().hex[:6]}")
        .with_instance("inst_01h455vb4pex5vsknk084sn02q")
        .with_actor("usr_go")
        .with_payload({"replicas": 3, "ratio": 2.5, "tags": ["a", "<b>&"], "nested": {"z": 1}})
    )


def _run(program: Path, *args: str, stdin: str = "") -> list[str]:
    done = subprocess.run(
        [str(program), *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stderr}"
    return done.stdout.splitlines()


def _common(settings: Settings, registry_url: str, topic: str) -> list[str]:
    return [
        "-bootstrap",
        settings.bootstrap_servers or "",
        "-registry",
        registry_url,
        "-topic",
        topic,
    ]


def test_go_produces_an_event_python_decodes_identically(
    go_program: Path, settings: Settings, registry_url: str
) -> None:
    event = _event()
    topic = settings.topics.for_event_type(event.type)
    position_line, go_json = _run(
        go_program,
        "produce",
        *_common(settings, registry_url, topic),
        "-schema",
        str(AVRO_DIR / "event.avsc"),
        stdin=event.to_json(),
    )
    assert go_json == event.to_json()  # Go's encoding/json agrees with ours
    position = json.loads(position_line)

    consumer = Consumer(consumer_config(settings, f"go-check-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(topic, position["partition"], position["offset"])])
    try:
        message = consumer.poll(30)
    finally:
        consumer.close()
    assert message is not None and message.error() is None
    assert message.key() == event.tenant_id.encode()
    decoded = Serde(registry_url).events.decode(message.value(), topic)
    assert decoded == event
    assert decoded.to_json() == event.to_json()


def test_go_decodes_an_event_python_produced(
    go_program: Path, settings: Settings, registry_url: str
) -> None:
    event = _event()
    topic = settings.topics.for_event_type(event.type)
    where: list[tuple[int, int]] = []
    producer = Producer(producer_config(settings))
    producer.produce(
        topic,
        key=event.tenant_id.encode(),
        value=Serde(registry_url).events.encode(event, topic),
        on_delivery=lambda err, msg: where.append((msg.partition() or 0, msg.offset() or 0)),
    )
    assert producer.flush(15) == 0
    partition, offset = where[0]
    (go_json,) = _run(
        go_program,
        "consume",
        *_common(settings, registry_url, topic),
        "-partition",
        str(partition),
        "-offset",
        str(offset),
    )
    assert go_json == event.to_json()
    assert Event.from_json(go_json) == event
