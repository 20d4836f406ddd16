"""Pure rules of the portal's forms: the event-type checkboxes, endpoint forms, delivery filters
and time ranges. No I/O, so each is unit tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.delivery_records import DeliveryStatus, WebhookDelivery
from schemas.event_types import SUBSYSTEM_OF, SUBSYSTEMS, SYSTEM_EVENT_TYPES, EventType

WILDCARD = "*"
# The HTML datetime-local format; the portal shows and reads every time in UTC.
TIME_FORMAT = "%Y-%m-%dT%H:%M"


@dataclass(frozen=True)
class TypeGroup:
    """One subsystem's checkboxes: its wildcards (``deploy.*``) and its exact types."""

    subsystem: str
    wildcards: tuple[str, ...]
    types: tuple[str, ...]


def event_type_groups() -> list[TypeGroup]:
    """The catalog as checkbox groups, one per subsystem, in catalog order."""
    groups = []
    for subsystem in SUBSYSTEMS:
        types = tuple(str(t) for t in EventType if SUBSYSTEM_OF[t] == subsystem)
        prefixes = dict.fromkeys(t.split(".", 1)[0] for t in types)
        groups.append(TypeGroup(subsystem, tuple(f"{p}.*" for p in prefixes), types))
    return groups


def subscribes(patterns: Sequence[str], event_type: str) -> bool:
    """Whether a subscription (``events`` of a webhook) receives ``event_type``.

    The router's rule: an empty list or ``*`` means every type, ``<prefix>.*`` a prefix.
    """
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in (WILDCARD, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def subscribed_types(patterns: Sequence[str]) -> list[str]:
    """The catalog types a subscription receives, in catalog order."""
    return [str(t) for t in EventType if subscribes(patterns, str(t))]


def sample_event_type(patterns: Sequence[str]) -> str | None:
    """The type of a test event for a subscription: the first subscribed type a tenant may
    send (system types are Ctrl Plane Events' own); None if it subscribes to none."""
    for event_type in subscribed_types(patterns):
        if event_type not in SYSTEM_EVENT_TYPES:
            return event_type
    return None


def selected_patterns(checked: Iterable[str], extra: str = "") -> list[str]:
    """The ``events`` list of an endpoint form: checked boxes plus comma-separated patterns
    typed by hand. Exact types a checked wildcard covers are dropped (``deploy.*`` alone, not
    ``deploy.*`` and ``deploy.failed``); ``*`` stands alone. Order: as given, without repeats.
    """
    chosen = list(dict.fromkeys([*checked, *(p.strip() for p in extra.split(",") if p.strip())]))
    if WILDCARD in chosen:
        return [WILDCARD]
    wildcards = [p for p in chosen if p.endswith(".*")]
    return [
        p for p in chosen if p.endswith(".*") or not any(p.startswith(w[:-1]) for w in wildcards)
    ]


def parse_time(text: str | None) -> datetime | None:
    """A ``datetime-local`` value (UTC) or an ISO-8601 time; None if empty. ValueError if bad."""
    if not text or not text.strip():
        return None
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(value: datetime | None) -> str:
    """``value`` for a ``datetime-local`` input (UTC)."""
    return value.astimezone(UTC).strftime(TIME_FORMAT) if value is not None else ""


@dataclass(frozen=True)
class DeliveryFilters:
    """The deliveries page's filters (None: any). Times bound the delivery's creation."""

    webhook_id: str | None = None
    status: DeliveryStatus | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, delivery: WebhookDelivery, event_type: str | None) -> bool:
        """Whether ``delivery`` (whose event has ``event_type``, None if unknown) is selected."""
        return (
            (self.webhook_id is None or delivery.webhook_id == self.webhook_id)
            and (self.status is None or delivery.status == self.status)
            and (self.event_type is None or event_type == self.event_type)
            and (self.since is None or delivery.created_at >= self.since)
            and (self.until is None or delivery.created_at < self.until)
        )

    def query(self) -> dict[str, str]:
        """The filters as query parameters (empty ones left out), for links and polling."""
        values = {
            "endpoint": self.webhook_id or "",
            "status": str(self.status) if self.status else "",
            "type": self.event_type or "",
            "since": format_time(self.since),
            "until": format_time(self.until),
        }
        return {k: v for k, v in values.items() if v}


def parse_delivery_filters(query: Mapping[str, str]) -> tuple[DeliveryFilters, list[str]]:
    """The filters of a deliveries query string, and what was wrong with it (ignored parts)."""
    errors: list[str] = []
    status_text = query.get("status") or ""
    status = None
    if status_text:
        if status_text in {str(s) for s in DeliveryStatus}:
            status = DeliveryStatus(status_text)
        else:
            errors.append(f"unknown status {status_text!r}")
    event_type = query.get("type") or None
    if event_type is not None and event_type not in {str(t) for t in EventType}:
        errors.append(f"unknown event type {event_type!r}")
        event_type = None
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_time(query.get(name))
        except ValueError:
            errors.append(f"{name}: not a time")
            times[name] = None
    filters = DeliveryFilters(
        webhook_id=query.get("endpoint") or None,
        status=status,
        event_type=event_type,
        since=times["since"],
        until=times["until"],
    )
    return filters, errors


def parse_range(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """A replay's time range; ValueError (saying why) unless ``since < until <= now``-ish."""
    start = parse_time(since)
    end = parse_time(until) or now
    if start is None:
        raise ValueError("a start time is required")
    if start >= end:
        raise ValueError("the start must be before the end")
    return start, min(end, now)
