"""Opt-in payload validation at the gateway: the catalog's ``payload_schema`` of every type that
says ``"validate": true`` (schemas/catalog/event_types.json), checked with jsonschema.

Validators are built once (each schema checked against its metaschema then, so a broken
catalog stops the gateway at start rather than refusing every event of the type); types
without ``validate`` cost one dict lookup per event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator

from producers.gateway.problems import unprocessable
from schemas.event import Event
from schemas.event_types import EVENT_TYPE_INFO, EventTypeInfo
from schemas.topics import Topics

_MAX_DETAIL = 300  # a schema error quotes the offending value: keep the answer short


def _path(parts: Sequence[Any]) -> str:
    """``payload.a[0].b`` for the JSON path ``("a", 0, "b")`` inside the payload."""
    text = "payload"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


class PayloadValidator:
    """Checks the payloads of the types whose catalog entry asks for it."""

    def __init__(self, catalog: Mapping[str, EventTypeInfo] = EVENT_TYPE_INFO) -> None:
        self._validators: dict[str, Draft202012Validator] = {}
        for name, info in catalog.items():
            if info.validate and info.payload_schema is not None:
                Draft202012Validator.check_schema(info.payload_schema)
                self._validators[name] = Draft202012Validator(info.payload_schema)

    @property
    def validated_types(self) -> frozenset[str]:
        """The types whose payloads are checked."""
        return frozenset(self._validators)

    def check(self, events: Sequence[Event], batch: bool) -> None:
        """422 naming ``payload.<path>`` (``[i].payload.<path>`` in a batch) and the reason
        for the first event whose payload breaks its type's schema."""
        validators = self._validators
        if not validators:
            return
        for index, event in enumerate(events):
            validator = validators.get(event.type)
            if validator is None:
                continue
            # The deepest, then first, error: the most specific path for the caller to fix.
            error = min(
                validator.iter_errors(event.payload),
                key=lambda e: (-len(e.absolute_path), list(map(str, e.absolute_path))),
                default=None,
            )
            if error is not None:
                prefix = f"[{index}]." if batch else ""
                detail = error.message
                if len(detail) > _MAX_DETAIL:
                    detail = detail[: _MAX_DETAIL - 1] + "…"
                parts = list(error.absolute_path)
                if error.validator == "required" and isinstance(error.instance, Mapping):
                    # Name the missing member itself, not the object that lacks it.
                    missing = [p for p in error.validator_value if p not in error.instance]
                    parts += missing[:1]
                field = prefix + _path(parts)
                raise unprocessable(field, f"breaks the {event.type} payload schema: {detail}")


def event_type_list(
    topics: Topics, catalog: Mapping[str, EventTypeInfo] = EVENT_TYPE_INFO
) -> list[dict[str, Any]]:
    """The body of ``GET /v1/event-types``: every type in catalog order, with its topic."""
    return [
        {**info.to_json_dict(), "topic": topics.for_event_type(name)}
        for name, info in catalog.items()
    ]
