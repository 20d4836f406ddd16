"""The Event model, its builder, validation and Ctrl Plane's JSON form."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from schemas import gojson, ids
from schemas.catalog import SUBSYSTEM_OF, EventType, parse_event_type
from schemas.errors import ContractError
from schemas.timestamps import format_rfc3339, parse_rfc3339, to_utc, utc_now

_TRUSTED_PAYLOAD: ContextVar[bool] = ContextVar("trusted_payload", default=False)

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


def check_json_object(value: Any, field: str = "payload") -> dict[str, Any]:
    """A deep copy of ``value`` if it is a JSON object, else a ContractError naming the bad path."""
    if not isinstance(value, Mapping):
        raise ContractError(field, f"must be a JSON object, got {type(value).__name__}")
    return _copy_json(value, field)  # type: ignore[no-any-return]


def _copy_json(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ContractError(path, f"{value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ContractError(path, f"object keys must be strings, got {key!r}")
            copied[key] = _copy_json(item, f"{path}.{key}")
        return copied
    if isinstance(value, list | tuple):
        return [_copy_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise ContractError(path, f"{type(value).__name__} is not a JSON value")


@dataclass(frozen=True, slots=True)
class Event:
    """A Ctrl Plane state change.

    Build one with ``Event.new(EventType.INSTANCE_CREATED, tenant_id).with_instance(i)
    .with_actor(u).with_payload({...})``. Events are immutable: each ``with_`` returns a copy.
    Every field is validated on construction; a ContractError names the field and the reason.
    """

    id: str
    type: EventType
    tenant_id: str
    timestamp: datetime
    instance_id: str | None = None
    actor_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids.check_id(self.id, ids.EVENT, "id")
        object.__setattr__(self, "type", parse_event_type(self.type))
        if not isinstance(self.tenant_id, str) or not self.tenant_id.strip():
            raise ContractError("tenant_id", "must be a non-empty string")
        if self.instance_id is not None:
            ids.check_id(self.instance_id, ids.INSTANCE, "instance_id")
        if self.actor_id is not None and not isinstance(self.actor_id, str):
            raise ContractError("actor_id", "must be a string")
        if not _TRUSTED_PAYLOAD.get():
            object.__setattr__(self, "payload", check_json_object(self.payload))
        object.__setattr__(self, "timestamp", to_utc(self.timestamp, "timestamp"))

    @classmethod
    def new(cls, event_type: EventType | str, tenant_id: str) -> Self:
        """A new event with a fresh ``evt_`` id and the current UTC time."""
        return cls(
            id=ids.new_id(ids.EVENT),
            type=parse_event_type(event_type),
            tenant_id=tenant_id,
            timestamp=utc_now(),
        )

    def with_instance(self, instance_id: str) -> Self:
        """A copy of this event about instance ``instance_id`` (an ``inst_`` TypeID)."""
        return replace(self, instance_id=instance_id)

    def with_actor(self, actor_id: str) -> Self:
        """A copy of this event caused by ``actor_id``."""
        return replace(self, actor_id=actor_id)

    def with_payload(self, payload: Mapping[str, Any]) -> Self:
        """A copy of this event carrying ``payload`` (a JSON object, copied deeply)."""
        return replace(self, payload=check_json_object(payload))

    @property
    def subsystem(self) -> str:
        """The subsystem, and so the topic, this event belongs to."""
        return SUBSYSTEM_OF[self.type]

    # -- Ctrl Plane's JSON form (Go's encoding/json of event.Event) --------------------------

    def to_json_fields(self) -> list[tuple[str, Any]]:
        """The fields in Go's declaration order, with Go's omitempty rules applied."""
        fields: list[tuple[str, Any]] = [
            ("id", self.id),
            ("type", str(self.type)),
            ("tenant_id", self.tenant_id),
        ]
        if self.instance_id:
            fields.append(("instance_id", self.instance_id))
        if self.actor_id:
            fields.append(("actor_id", self.actor_id))
        if self.payload:
            fields.append(("payload", self.payload))
        fields.append(("timestamp", format_rfc3339(self.timestamp)))
        return fields

    def to_json(self) -> str:
        """The event exactly as Ctrl Plane's Go struct marshals it."""
        return gojson.dumps_ordered(self.to_json_fields())

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form as a dict (for embedding in larger JSON documents)."""
        return dict(self.to_json_fields())

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Parse Ctrl Plane's JSON form; a ContractError names the first bad field."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError("body", f"is not valid JSON ({exc})") from None
        return cls.from_json_dict(data)

    @classmethod
    def from_json_dict(cls, data: Any) -> Self:
        """Build an event from a parsed JSON object in Ctrl Plane's form."""
        if not isinstance(data, Mapping):
            raise ContractError("event", "must be a JSON object")
        known = {"id", "type", "tenant_id", "instance_id", "actor_id", "payload", "timestamp"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(unknown[0], "is not a field of an event")
        for required in ("id", "type", "tenant_id", "timestamp"):
            if data.get(required) in (None, ""):
                raise ContractError(required, "is required")
        for text_field in ("id", "type", "tenant_id", "instance_id", "actor_id", "timestamp"):
            value = data.get(text_field)
            if value is not None and not isinstance(value, str):
                raise ContractError(text_field, "must be a string")
        payload = data.get("payload")
        return cls(
            id=data["id"],
            type=parse_event_type(data["type"]),
            tenant_id=data["tenant_id"],
            instance_id=data.get("instance_id") or None,
            actor_id=data.get("actor_id") or None,
            payload={} if payload is None else payload,
            timestamp=parse_rfc3339(data["timestamp"], "timestamp"),
        )

    # -- Avro record form (see schemas/avro/event.avsc) -------------------------------------

    def to_avro(self) -> dict[str, Any]:
        """The record for the Avro ``Event`` schema: payload as JSON text."""
        return {
            "id": self.id,
            "type": str(self.type),
            "tenant_id": self.tenant_id,
            "instance_id": self.instance_id,
            "actor_id": self.actor_id,
            "payload": gojson.dumps(self.payload),
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        """Build an event from a decoded Avro ``Event`` record (payload text parsed and checked)."""
        try:
            payload = json.loads(record["payload"] or "{}", parse_constant=_reject_constant)
        except ValueError as exc:
            raise ContractError("payload", f"is not valid JSON text ({exc})") from None
        if not isinstance(payload, dict):
            raise ContractError("payload", f"must be a JSON object, got {type(payload).__name__}")
        # Freshly parsed JSON is already a private, JSON-only object: skip the deep copy that
        # __post_init__ makes of caller-supplied payloads (this runs for every consumed record).
        token = _TRUSTED_PAYLOAD.set(True)
        try:
            return cls(
                id=record["id"],
                type=parse_event_type(record["type"]),
                tenant_id=record["tenant_id"],
                instance_id=record.get("instance_id"),
                actor_id=record.get("actor_id"),
                payload=payload,
                timestamp=record["timestamp"],
            )
        finally:
            _TRUSTED_PAYLOAD.reset(token)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
