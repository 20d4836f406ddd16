"""Request validation: raw HTTP input in, contract objects or a Problem naming the field out."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from producers.gateway.delivery_index import SortKey, decode_cursor
from producers.gateway.problems import Problem, bad_request, unprocessable
from schemas import ids
from schemas.custom_headers import check_headers
from schemas.delivery_records import DeliveryStatus
from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import SYSTEM_EVENT_TYPES, EventType
from schemas.filters import FilterError, filter_text
from schemas.timestamps import format_rfc3339, utc_now
from schemas.webhook import RateLimit

MAX_BATCH = 1000
MAX_URL_LENGTH = 2048
MAX_LIST_LIMIT = 1000
_TYPES = frozenset(str(t) for t in EventType)


def check_content_type(content_type: str | None) -> None:
    """Refuse (415, naming Content-Type) anything but JSON."""
    media = (content_type or "").split(";")[0].strip().lower()
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if not is_json:
        raise Problem(
            415,
            "unsupported-media-type",
            f"expected application/json, got {media or 'none'}",
            "Content-Type",
        )


def check_size(length: int | None, limit: int) -> None:
    """Refuse (413, naming the body) a body larger than ``limit`` bytes."""
    if length is not None and length > limit:
        raise Problem(413, "body-too-large", f"body exceeds {limit} bytes", "body")


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body``; 400 naming the body if it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("body", f"is not valid JSON ({exc})") from None


def _object(data: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise unprocessable(field, "must be a JSON object")
    return data


# -- events -------------------------------------------------------------------------------


def parse_events(data: Any) -> list[Event]:
    """One event (an object) or a batch (an array) in Ctrl Plane's JSON form.

    ``id`` and ``timestamp`` may be left out: the gateway assigns a fresh ``evt_`` id and now.
    """
    if isinstance(data, list):
        if not data:
            raise unprocessable("body", "a batch must hold at least one event")
        if len(data) > MAX_BATCH:
            raise unprocessable("body", f"a batch holds at most {MAX_BATCH} events")
        return [_event(item, f"[{index}].") for index, item in enumerate(data)]
    return [_event(data, "")]


def _event(data: Any, prefix: str) -> Event:
    item = dict(_object(data, prefix.rstrip(".") or "body"))
    if item.get("id") is None:
        item["id"] = ids.new_id(ids.EVENT)
    if item.get("timestamp") is None:
        item["timestamp"] = format_rfc3339(utc_now())
    try:
        event = Event.from_json_dict(item)
    except ContractError as exc:
        raise Problem.from_contract(exc, prefix) from None
    if event.type in SYSTEM_EVENT_TYPES:
        raise unprocessable(f"{prefix}type", f"{event.type} is emitted by Ctrl Plane Events only")
    return event


# -- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCreate:
    tenant_id: str | None
    url: str
    events: tuple[str, ...]
    active: bool
    filter_json: str | None = None  # the payload filter's compact JSON text
    headers: tuple[tuple[str, str], ...] = ()  # custom headers, plaintext until encrypted
    rate_limit: RateLimit | None = None


def parse_webhook_create(data: Any) -> WebhookCreate:
    """The body of ``POST /v1/webhooks``."""
    body = _object(data, "body")
    _no_unknown(body, {"tenant_id", "url", "events", "active", "filter", "headers", "rate_limit"})
    if "url" not in body:
        raise unprocessable("url", "is required")
    tenant = body.get("tenant_id")
    if tenant is not None and (not isinstance(tenant, str) or not tenant.strip()):
        raise unprocessable("tenant_id", "must be a non-empty string")
    return WebhookCreate(
        tenant_id=tenant,
        url=_url(body["url"]),
        events=_patterns(body.get("events", [])),
        active=_bool(body.get("active", True), "active"),
        filter_json=_filter(body.get("filter")),
        headers=_headers(body.get("headers")),
        rate_limit=_rate_limit(body.get("rate_limit")),
    )


def parse_webhook_update(data: Any) -> dict[str, Any]:
    """The body of ``PATCH /v1/webhooks/{id}``: the fields to change."""
    body = _object(data, "body")
    _no_unknown(body, {"url", "events", "active", "filter", "headers", "rate_limit"})
    changes: dict[str, Any] = {}
    if "url" in body:
        changes["url"] = _url(body["url"])
    if "events" in body:
        changes["events"] = _patterns(body["events"])
    if "active" in body:
        changes["active"] = _bool(body["active"], "active")
    if "filter" in body:
        changes["filter_json"] = _filter(body["filter"])  # null removes the filter
    if "headers" in body:
        changes["headers"] = _headers(body["headers"])  # replaces them all; null removes them
    if "rate_limit" in body:
        changes["rate_limit"] = _rate_limit(body["rate_limit"])  # null: unlimited
    return changes


def _rate_limit(value: Any) -> RateLimit | None:
    """``{"per_second": r, "burst": b}`` (burst default: r rounded up); 422 naming the key."""
    if value is None:
        return None
    body = _object(value, "rate_limit")
    unknown = sorted(set(body) - {"per_second", "burst"})
    if unknown:
        raise unprocessable(f"rate_limit.{unknown[0]}", "is not a known field")
    if "per_second" not in body:
        raise unprocessable("rate_limit.per_second", "is required")
    rate = body["per_second"]
    burst = body.get("burst")
    if burst is None and isinstance(rate, int | float) and not isinstance(rate, bool):
        burst = max(1, math.ceil(rate)) if rate > 0 else 1
    try:
        # Without a usable rate there is no default burst: per_second is refused first.
        return RateLimit(rate, 1 if burst is None else burst)
    except ContractError as exc:
        raise unprocessable(exc.field, exc.reason) from None


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    """Custom headers (schemas/custom_headers.py); 422 naming ``headers.<name>``, never the
    value."""
    if value is None:
        return ()
    try:
        return check_headers(value)
    except ContractError as exc:
        raise unprocessable(exc.field, exc.reason) from None


def _filter(value: Any) -> str | None:
    """A payload filter (schemas/filters.py) as stored, None for none; 422 naming its path."""
    if value is None:
        return None
    try:
        return filter_text(value)
    except FilterError as exc:
        raise unprocessable(exc.field, exc.reason) from None


def _no_unknown(body: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise unprocessable(unknown[0], "is not a known field")


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise unprocessable(field, "must be true or false")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise unprocessable("url", "must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise unprocessable("url", f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise unprocessable("url", f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise unprocessable("url", "must be an absolute http:// or https:// URL")
    if any(ch.isspace() for ch in value):
        raise unprocessable("url", "must not contain whitespace")
    return value


def _patterns(value: Any) -> tuple[str, ...]:
    """Event types, ``<prefix>.*`` wildcards or ``*``; an empty list means every event."""
    if not isinstance(value, list):
        raise unprocessable("events", "must be an array of event types")
    patterns: list[str] = []
    for index, pattern in enumerate(value):
        field = f"events[{index}]"
        if not isinstance(pattern, str):
            raise unprocessable(field, "must be a string")
        known = pattern == "*" or pattern in _TYPES
        wildcard = pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in _TYPES)
        if not known and not wildcard:
            raise unprocessable(field, f"unknown event type or pattern {pattern!r}")
        if pattern not in patterns:
            patterns.append(pattern)
    return tuple(patterns)


# -- deliveries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryQuery:
    tenant_id: str | None = None
    event_id: str | None = None
    webhook_id: str | None = None
    status: DeliveryStatus | None = None
    limit: int = 100
    cursor: SortKey | None = None


def parse_delivery_query(query: Mapping[str, str]) -> DeliveryQuery:
    """The query string of ``GET /v1/deliveries`` (``cursor``: a previous ``next_cursor``)."""
    _no_unknown(query, {"tenant_id", "event_id", "webhook_id", "status", "limit", "cursor"})
    status = query.get("status")
    if status is not None and status not in {str(s) for s in DeliveryStatus}:
        raise unprocessable("status", f"must be one of {', '.join(str(s) for s in DeliveryStatus)}")
    limit_text = query.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
        raise unprocessable("limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}")
    cursor = query.get("cursor") or None
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except ValueError as exc:
        raise unprocessable("cursor", str(exc)) from None
    return DeliveryQuery(
        tenant_id=query.get("tenant_id") or None,
        event_id=query.get("event_id") or None,
        webhook_id=query.get("webhook_id") or None,
        status=DeliveryStatus(status) if status else None,
        limit=int(limit_text),
        cursor=after,
    )
