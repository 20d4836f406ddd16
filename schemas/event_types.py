"""The event-type catalog (``catalog/event_types.json``, which other languages read too)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from schemas.errors import ContractError

CATALOG_DIR = Path(__file__).with_name("catalog")


def load_catalog(name: str) -> dict[str, Any]:
    """One JSON file of ``catalog/`` (``event_types.json``, ``topics.json``), parsed."""
    data: dict[str, Any] = json.loads((CATALOG_DIR / name).read_text(encoding="utf-8"))
    return data


_EVENT_CATALOG = load_catalog("event_types.json")

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
