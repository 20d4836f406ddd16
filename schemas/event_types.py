"""The event-type catalog (``catalog/event_types.json``, which other languages read too)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
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


@dataclass(frozen=True)
class EventTypeInfo:
    """What the catalog says of one type (its ``type_details`` entry, all of it optional).

    ``payload_schema`` is a JSON Schema (draft 2020-12) of the payload, or None; with
    ``validate`` the gateway refuses payloads that break it (checked there, with jsonschema).
    """

    type: str
    subsystem: str
    description: str = ""
    payload_schema: Mapping[str, Any] | None = None
    validate: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """The type as ``GET /v1/event-types`` lists it (``topic`` is added by the gateway)."""
        data: dict[str, Any] = {
            "type": self.type,
            "subsystem": self.subsystem,
            "description": self.description,
            "validate": self.validate,
        }
        if self.payload_schema is not None:
            data["payload_schema"] = json.loads(json.dumps(self.payload_schema))
        return data


def type_details(catalog: Mapping[str, Any]) -> dict[str, EventTypeInfo]:
    """Every type of ``catalog`` (the parsed ``event_types.json``) with its optional details;
    ContractError naming ``type_details.<type>.<key>`` for a malformed entry."""
    details = catalog.get("type_details", {})
    if not isinstance(details, Mapping):
        raise ContractError("type_details", "must be an object keyed by event type")
    subsystems: Mapping[str, str] = catalog["event_types"]
    unknown = sorted(set(details) - set(subsystems))
    if unknown:
        raise ContractError(f"type_details.{unknown[0]}", "is not an event type of the catalog")
    found: dict[str, EventTypeInfo] = {}
    for name, subsystem in subsystems.items():
        entry = details.get(name, {})
        where = f"type_details.{name}"
        if not isinstance(entry, Mapping):
            raise ContractError(where, "must be an object")
        extra = sorted(set(entry) - {"description", "payload_schema", "validate"})
        if extra:
            raise ContractError(f"{where}.{extra[0]}", "is not a known key")
        description = entry.get("description", "")
        schema = entry.get("payload_schema")
        validate = entry.get("validate", False)
        if not isinstance(description, str):
            raise ContractError(f"{where}.description", "must be a string")
        if schema is not None and not isinstance(schema, Mapping):
            raise ContractError(f"{where}.payload_schema", "must be a JSON Schema object")
        if not isinstance(validate, bool) or (validate and schema is None):
            raise ContractError(f"{where}.validate", "must be a boolean, true only with a schema")
        found[name] = EventTypeInfo(name, subsystem, description, schema, validate)
    return found


# Read-only: shared by every caller of the process.
EVENT_TYPE_INFO: Mapping[str, EventTypeInfo] = MappingProxyType(type_details(_EVENT_CATALOG))
