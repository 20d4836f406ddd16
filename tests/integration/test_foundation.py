"""The foundation on a real broker: topics, Avro events of every subsystem, the broker CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource

from cpevents.localkafka.broker import free_port
from plumbing.kafka.clients import admin_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.publisher import EventPublisher
from schemas.event import Event
from schemas.event_types import SUBSYSTEMS, EventType
from tests.kafka_helpers import read_all


def test_events_of_every_subsystem_round_trip_through_kafka(settings: Settings) -> None:
    serde = serde_for(settings)
    events = [
        Event.new(event_type, f"ten_{index % 3}")
        .with_actor("usr_1")
        .with_payload(
            {
                "index": index,
                "nested": {"list": [1, 2.5, None, {"deep": [True]}]},
                "text": '<ünïcode & "quotes">',
            }
        )
        for index, event_type in enumerate(EventType)
    ]
    EventPublisher(settings, serde).publish(events)

    records = read_all(settings, settings.topics.all_events, expected=len(events))
    decoded = {}
    for record in records:
        event = serde.events.decode(record.value(), record.topic())
        assert record.topic() == settings.topics.events(event.subsystem)
        assert record.key() == event.tenant_id.encode()
        decoded[event.id] = event
    assert decoded == {event.id: event for event in events}
    assert {e.subsystem for e in decoded.values()} == set(SUBSYSTEMS)


def test_a_tenants_events_keep_their_order_within_a_subsystem(settings: Settings) -> None:
    serde = serde_for(settings)
    events = [Event.new("health.passed", "ten_ordered").with_payload({"n": n}) for n in range(50)]
    EventPublisher(settings, serde).publish(events)
    records = read_all(settings, [settings.topics.events("health")], expected=50)
    assert len({r.partition() for r in records}) == 1
    assert [serde.events.decode(r.value(), r.topic()).payload["n"] for r in records] == list(
        range(50)
    )


def test_topics_create_is_idempotent_and_applies_policies(settings: Settings) -> None:
    again = ensure_topics(settings)
    assert again and not any(result.created for result in again)
    admin = AdminClient(admin_config(settings))
    resources = [
        ConfigResource("topic", settings.topics.webhooks),
        ConfigResource("topic", settings.topics.deliveries_dlt),
    ]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    assert configs[settings.topics.webhooks]["cleanup.policy"].value == "compact"
    assert configs[settings.topics.deliveries_dlt]["cleanup.policy"].value == "delete"
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[settings.topics.webhooks].partitions) == 1
    assert len(metadata.topics[settings.topics.events("deploy")].partitions) == 3


def test_topics_create_cli(cli_env: dict[str, str], settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cpevents", "topics", "create"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"exists   {settings.topics.webhooks}" in out


def test_kafka_start_status_stop_leaves_no_jvm(tmp_path: Path) -> None:
    """The CLI's own broker, on free ports so it never collides with a running stack."""
    env = {k: v for k, v in os.environ.items() if k != "CPEVENTS_BOOTSTRAP_SERVERS"}
    env.update(
        CPEVENTS_HOME=str(tmp_path),
        CPEVENTS_KAFKA_PORT=str(free_port()),
        CPEVENTS_KAFKA_CONTROLLER_PORT=str(free_port()),
    )
    # Share the jar cache so the test does not download Kafka again.
    jars = Settings().home / f"kafka-{Settings().kafka_version}"
    if jars.exists():
        (tmp_path / jars.name).symlink_to(jars)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cpevents", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    assert cli("kafka", "status").returncode == 1
    started = cli("kafka", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((tmp_path / "broker" / "kafka.pid").read_text())
    try:
        status = cli("kafka", "status")
        assert status.returncode == 0 and "running" in status.stdout
        created = cli("topics", "create")
        assert created.returncode == 0, created.stdout + created.stderr
    finally:
        stopped = cli("kafka", "stop")
    assert "stopped" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists()
    assert cli("kafka", "status").returncode == 1
    # A stopped broker starts again on its own data (same cluster id, topics kept).
    restarted = cli("kafka", "start")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    try:
        again = cli("topics", "create")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "exists" in again.stdout and "created" not in again.stdout
    finally:
        assert "stopped" in cli("kafka", "stop").stdout
