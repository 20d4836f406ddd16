"""ensure_topics on the real broker: the attempt log's retention (issue 14) on new and on
existing topics; other differences from the catalog are reported, not altered."""

from __future__ import annotations

import time

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ResourceType,
)

from plumbing.kafka.clients import admin_config
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.settings import Settings
from schemas.topics import TopicSpec
from tests.conftest import make_settings


def topic_config(settings: Settings, topic: str) -> dict[str, str | None]:
    admin = AdminClient(admin_config(settings))
    resource = ConfigResource(ResourceType.TOPIC, topic)
    (future,) = admin.describe_configs([resource]).values()
    return {key: entry.value for key, entry in future.result(timeout=30).items()}


def settled_config(settings: Settings, topic: str, key: str, wanted: str) -> str | None:
    """``key`` of ``topic`` once it reads ``wanted`` (or as it reads after 10 s): in KRaft an
    alteration is committed by the controller before the broker serving DescribeConfigs has
    applied it, so a read right after it may still see the old value."""
    deadline = time.monotonic() + 10
    while (value := topic_config(settings, topic)[key]) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def test_attempt_log_gets_retention_from_settings_when_created(kafka_bootstrap: str) -> None:
    settings = make_settings(kafka_bootstrap, attempt_log_retention=7200.0)
    results = {r.name: r for r in ensure_topics(settings)}
    log = settings.topics.webhook_deliveries
    assert results[log].created
    config = topic_config(settings, log)
    assert config["cleanup.policy"] == "compact,delete"
    assert config["retention.ms"] == "7200000"


def test_existing_attempt_log_is_altered_and_other_drift_is_only_reported(
    kafka_bootstrap: str,
) -> None:
    settings = make_settings(kafka_bootstrap)
    log = settings.topics.webhook_deliveries
    dlt = settings.topics.events_dlt
    # As an older release created them: the attempt log compacted only (it grew forever), and
    # an operator's own retention on a dead-letter topic.
    ensure_topics(
        settings,
        [
            # (a role of its own, so the creation itself applies no setting)
            TopicSpec(log, "old-attempt-log", 3, {"cleanup.policy": "compact"}),
            TopicSpec(dlt, "undecodable-events", 3, {"retention.ms": "86400000"}),
        ],
    )
    results = {r.name: r for r in ensure_topics(settings)}
    retention = str(int(settings.attempt_log_retention * 1000))
    assert not results[log].created
    assert results[log].altered == {"cleanup.policy": "compact,delete", "retention.ms": retention}
    assert results[dlt].altered == {}
    assert results[dlt].drift == {"retention.ms": ("86400000", "2592000000")}
    assert settled_config(settings, log, "cleanup.policy", "compact,delete") == "compact,delete"
    assert settled_config(settings, log, "retention.ms", retention) == retention
    assert topic_config(settings, dlt)["retention.ms"] == "86400000"  # left as it was
    # Idempotent: nothing left to alter.
    again = {r.name: r for r in ensure_topics(settings)}
    assert again[log].altered == {}
