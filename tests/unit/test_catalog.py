from __future__ import annotations

import json

from plumbing.kafka.topic_admin import configured
from plumbing.settings import Settings
from schemas.event_types import CATALOG_DIR, SUBSYSTEMS, EventType, subsystem_of
from schemas.topics import Topics

ARCHITECTURE_TYPES = {
    "instance": [
        "created",
        "started",
        "stopped",
        "failed",
        "deleted",
        "scaled",
        "suspended",
        "unsuspended",
    ],
    "deploy": ["started", "succeeded", "failed", "rolled_back"],
    "health": ["passed", "failed", "degraded", "recovered"],
    "domain": ["added", "verified", "removed"],
    "cert": ["provisioned", "expiring"],
    "tenant": ["created", "suspended", "deleted"],
    "quota": ["exceeded"],
}
SUBSYSTEM_OF_PREFIX = {
    "instance": "instance",
    "deploy": "deploy",
    "health": "health",
    "domain": "network",
    "cert": "network",
    "tenant": "admin",
    "quota": "admin",
}


def test_catalog_has_the_25_ctrl_plane_types_and_our_operational_one() -> None:
    expected = {
        f"{prefix}.{verb}": SUBSYSTEM_OF_PREFIX[prefix]
        for prefix, verbs in ARCHITECTURE_TYPES.items()
        for verb in verbs
    }
    assert len(expected) == 25
    expected["webhook.disabled"] = "admin"  # the delivery worker's operational event
    assert {str(t): subsystem_of(t) for t in EventType} == expected
    assert EventType.DEPLOY_ROLLED_BACK == "deploy.rolled_back"


def test_catalog_files_are_plain_json_for_other_languages() -> None:
    data = json.loads((CATALOG_DIR / "event_types.json").read_text())
    assert list(data["subsystems"]) == list(SUBSYSTEMS)
    assert set(data["event_types"].values()) == set(SUBSYSTEMS)
    topics = json.loads((CATALOG_DIR / "topics.json").read_text())
    assert topics["retry_tiers"] == ["5s", "5m", "30m", "2h", "5h", "10h"]


def test_topic_names_follow_the_prefix() -> None:
    topics = Topics(prefix="acme.")
    assert topics.for_event_type("cert.expiring") == "acme.events.network"
    assert topics.for_event_type("quota.exceeded") == "acme.events.admin"
    assert topics.retry("5m") == "acme.deliveries.retry.5m"
    assert topics.webhooks == "acme.webhooks"


def test_specs_expand_subsystems_and_tiers_with_their_policies() -> None:
    specs = {s.name: s for s in Topics(prefix="p.", retry_tiers=("1s", "1m")).specs(6)}
    assert set(specs) == {
        *(f"p.events.{s}" for s in SUBSYSTEMS),
        "p.webhooks",
        "p.deliveries",
        "p.deliveries.retry.1s",
        "p.deliveries.retry.1m",
        "p.deliveries.dlt",
        "p.webhook-deliveries",
        "p.events.dlt",
        "p.bus.dlt",
        "p.idempotency",  # issue 18: Idempotency-Key claims and answers (JSON values)
    }
    assert specs["p.webhooks"].config["cleanup.policy"] == "compact"
    assert specs["p.webhooks"].partitions == 1
    # The attempt log is compacted (latest state per delivery) AND expires (issue 14).
    assert specs["p.webhook-deliveries"].config["cleanup.policy"] == "compact,delete"
    assert specs["p.webhook-deliveries"].config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert specs["p.deliveries.retry.1s"].config["cleanup.policy"] == "delete"
    assert "retention.ms" in specs["p.deliveries.dlt"].config
    assert specs["p.events.deploy"].partitions == 6


def test_python_enum_mirrors_the_json_catalog_exactly() -> None:
    data = json.loads((CATALOG_DIR / "event_types.json").read_text())
    assert [str(t) for t in EventType] == list(data["event_types"])


def test_attempt_log_retention_comes_from_settings() -> None:
    settings = Settings(attempt_log_retention=3600.0, topic_prefix="p.")
    specs = {s.name: configured(s, settings) for s in settings.topics.specs(3)}
    assert specs["p.webhook-deliveries"].config["retention.ms"] == "3600000"
    assert specs["p.webhook-deliveries"].config["cleanup.policy"] == "compact,delete"
    # Other topics keep the catalog's values.
    assert specs["p.deliveries.dlt"].config["retention.ms"] == "2592000000"
    assert Settings().attempt_log_retention == 30 * 24 * 3600
