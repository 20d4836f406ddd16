"""The Event model, its builder, validation and Ctrl Plane's JSON form."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Self

from schemas import gojson, ids
from schemas.errors import ContractError
from schemas.event_types import SUBSYSTEM_OF, EventType, parse_event_type
from schemas.timestamps import format_rfc3339, parse_rfc3339, to_utc, utc_now

_TRUSTED_PAYLOAD: ContextVar[bool] = ContextVar("trusted_payload", default=False)

# Catalog types by their text, and their JSON string: a dict lookup instead of EventType(value)
# (the Enum call machinery) on every decoded record, and no escaping on every rendered one.
_EVENT_TYPES: dict[str, EventType] = {str(t): t for t in EventType}
_TYPE_JSON: dict[str, str] = {str(t): gojson.dumps_str(str(t)) for t in EventType}


def _event_type(value: Any) -> EventType:
    found = _EVENT_TYPES.get(value) if isinstance(value, str) else None
    return found if found is not None else parse_event_type(value)


def _checked(
    id: Any, type: Any, tenant_id: Any, instance_id: Any, actor_id: Any, timestamp: Any
) -> tuple[EventType, datetime]:
    """Validate an event's fields but the payload; the normalised type and timestamp."""
    ids.check_id(id, ids.EVENT, "id")
    event_type = _event_type(type)
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        raise ContractError("tenant_id", "must be a non-empty string")
    if instance_id is not None:
        ids.check_id(instance_id, ids.INSTANCE, "instance_id")
    if actor_id is not None and not isinstance(actor_id, str):
        raise ContractError("actor_id", "must be a string")
    if timestamp.__class__ is not datetime or timestamp.tzinfo is not UTC:
        timestamp = to_utc(timestamp, "timestamp")  # already-UTC values (all decoded) skip this
    return event_type, timestamp


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
        event_type, timestamp = _checked(
            self.id, self.type, self.tenant_id, self.instance_id, self.actor_id, self.timestamp
        )
        object.__setattr__(self, "type", event_type)
        if not _TRUSTED_PAYLOAD.get():
            object.__setattr__(self, "payload", check_json_object(self.payload))
        object.__setattr__(self, "timestamp", timestamp)

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
        """The event exactly as Ctrl Plane's Go struct marshals it.

        Written field by field (keys pre-encoded) rather than through ``dumps_ordered(
        to_json_fields())``: replay renders every event, and this is several times cheaper.
        A unit test keeps both byte-identical.
        """
        dumps_str = gojson.dumps_str
        parts = [
            '{"id":',
            dumps_str(self.id),
            ',"type":',
            _TYPE_JSON.get(self.type) or dumps_str(str(self.type)),
            ',"tenant_id":',
            dumps_str(self.tenant_id),
        ]
        if self.instance_id:
            parts += (',"instance_id":', dumps_str(self.instance_id))
        if self.actor_id:
            parts += (',"actor_id":', dumps_str(self.actor_id))
        if self.payload:
            parts += (',"payload":', gojson.dumps(self.payload))
        # RFC 3339 text never needs JSON escaping.
        parts += (',"timestamp":"', format_rfc3339(self.timestamp), '"}')
        return "".join(parts)

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
        text = record["payload"] or "{}"
        try:
            # A prebuilt decoder: json.loads would build one per call (its keyword argument).
            if isinstance(text, str) and not text.startswith("\ufeff"):
                payload = _PAYLOAD_DECODER.decode(text)
            else:
                payload = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise ContractError("payload", f"is not valid JSON text ({exc})") from None
        if not isinstance(payload, dict):
            raise ContractError("payload", f"must be a JSON object, got {type(payload).__name__}")
        event_id, instance_id, actor_id = (
            record["id"],
            record.get("instance_id"),
            record.get("actor_id"),
        )
        tenant_id = record["tenant_id"]
        event_type, timestamp = _checked(
            event_id, record["type"], tenant_id, instance_id, actor_id, record["timestamp"]
        )
        # Every field is checked as __post_init__ would, and freshly parsed JSON is already a
        # private, JSON-only object: build the instance directly, skipping the deep copy of the
        # payload and a second validation (this runs for every consumed record).
        event = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(event, "id", event_id)
        setattr_(event, "type", event_type)
        setattr_(event, "tenant_id", tenant_id)
        setattr_(event, "timestamp", timestamp)
        setattr_(event, "instance_id", instance_id)
        setattr_(event, "actor_id", actor_id)
        setattr_(event, "payload", payload)
        return event


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_PAYLOAD_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
