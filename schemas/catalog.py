"""The event-type and topic catalogs, loaded from the JSON files other languages read too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from schemas.errors import ContractError

CATALOG_DIR = Path(__file__).with_name("catalog")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CATALOG_DIR / name).read_text(encoding="utf-8"))
    return data


_EVENT_CATALOG = _load("event_types.json")
_TOPIC_CATALOG = _load("topics.json")

SUBSYSTEMS: tuple[str, ...] = tuple(_EVENT_CATALOG["subsystems"])
SUBSYSTEM_OF: dict[str, str] = dict(_EVENT_CATALOG["event_types"])


class EventType(StrEnum):
    """Ctrl Plane's event types, e.g. ``EventType.INSTANCE_CREATED == "instance.created"``, and
    our one operational type, ``webhook.disabled``.

    Mirrors ``catalog/event_types.json`` (the file other languages read); a unit test keeps the
    two identical.
    """

    INSTANCE_CREATED = "instance.created"
    INSTANCE_STARTED = "instance.started"
    INSTANCE_STOPPED = "instance.stopped"
    INSTANCE_FAILED = "instance.failed"
    INSTANCE_DELETED = "instance.deleted"
    INSTANCE_SCALED = "instance.scaled"
    INSTANCE_SUSPENDED = "instance.suspended"
    INSTANCE_UNSUSPENDED = "instance.unsuspended"
    DEPLOY_STARTED = "deploy.started"
    DEPLOY_SUCCEEDED = "deploy.succeeded"
    DEPLOY_FAILED = "deploy.failed"
    DEPLOY_ROLLED_BACK = "deploy.rolled_back"
    HEALTH_PASSED = "health.passed"
    HEALTH_FAILED = "health.failed"
    HEALTH_DEGRADED = "health.degraded"
    HEALTH_RECOVERED = "health.recovered"
    DOMAIN_ADDED = "domain.added"
    DOMAIN_VERIFIED = "domain.verified"
    DOMAIN_REMOVED = "domain.removed"
    CERT_PROVISIONED = "cert.provisioned"
    CERT_EXPIRING = "cert.expiring"
    TENANT_CREATED = "tenant.created"
    TENANT_SUSPENDED = "tenant.suspended"
    TENANT_DELETED = "tenant.deleted"
    QUOTA_EXCEEDED = "quota.exceeded"
    # Ours, not Ctrl Plane's: the delivery worker disabled a webhook (410 Gone, or failing for
    # CPEVENTS_DELIVERY_DISABLE_AFTER seconds); payload {"webhook_id", "reason"}.
    WEBHOOK_DISABLED = "webhook.disabled"


# Emitted by this system only (the delivery worker): callers of the gateway cannot send them, so
# a tenant cannot forge one. Tenants may still subscribe to them.
SYSTEM_EVENT_TYPES: frozenset[EventType] = frozenset({EventType.WEBHOOK_DISABLED})


def parse_event_type(value: str, field: str = "type") -> EventType:
    """The catalog type for ``value``; a ContractError naming ``field`` if it is not one."""
    try:
        return EventType(value)
    except ValueError:
        raise ContractError(field, f"unknown event type {value!r}") from None


def subsystem_of(event_type: str) -> str:
    """The subsystem (instance, deploy, health, network, admin) an event type belongs to."""
    return SUBSYSTEM_OF[parse_event_type(event_type)]


@dataclass(frozen=True)
class TopicSpec:
    """One concrete topic with its settings."""

    name: str
    role: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class Topics:
    """Topic names under a prefix (``CPEVENTS_TOPIC_PREFIX``, default ``ctrlplane.``)."""

    prefix: str = "ctrlplane."
    retry_tiers: tuple[str, ...] = tuple(_TOPIC_CATALOG["retry_tiers"])

    def events(self, subsystem: str) -> str:
        """The event topic of a subsystem, e.g. ``ctrlplane.events.instance``."""
        if subsystem not in SUBSYSTEMS:
            raise ContractError("subsystem", f"unknown subsystem {subsystem!r}")
        return f"{self.prefix}events.{subsystem}"

    def for_event_type(self, event_type: str) -> str:
        """The topic an event of ``event_type`` is published to."""
        return self.events(subsystem_of(event_type))

    @property
    def all_events(self) -> list[str]:
        return [self.events(s) for s in SUBSYSTEMS]

    @property
    def webhooks(self) -> str:
        return f"{self.prefix}webhooks"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}deliveries"

    def retry(self, tier: str) -> str:
        """The delay topic of a retry tier, e.g. ``ctrlplane.deliveries.retry.5m``."""
        return f"{self.prefix}deliveries.retry.{tier}"

    @property
    def deliveries_dlt(self) -> str:
        return f"{self.prefix}deliveries.dlt"

    @property
    def webhook_deliveries(self) -> str:
        return f"{self.prefix}webhook-deliveries"

    @property
    def events_dlt(self) -> str:
        return f"{self.prefix}events.dlt"

    @property
    def bus_dlt(self) -> str:
        """Where KafkaBus parks events whose handler kept failing."""
        return f"{self.prefix}bus.dlt"

    def specs(self, default_partitions: int) -> list[TopicSpec]:
        """Every topic of the catalog with its partitions and config, placeholders expanded."""
        specs: list[TopicSpec] = []
        for entry in _TOPIC_CATALOG["topics"]:
            partitions = entry["partitions"] or default_partitions
            config = dict(entry["config"])
            template: str = entry["name"]
            if "{subsystem}" in template:
                names = [template.format(subsystem=s) for s in SUBSYSTEMS]
            elif "{tier}" in template:
                names = [template.format(tier=t) for t in self.retry_tiers]
            else:
                names = [template]
            specs.extend(
                TopicSpec(self.prefix + n, entry["role"], partitions, config) for n in names
            )
        return specs
