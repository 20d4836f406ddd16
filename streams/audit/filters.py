"""Which records a replay keeps: tenant, event type (with wildcards), instance, and a webhook's
payload filter (schemas/filters.py) when the replay targets a webhook."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from schemas.delivery_records import DeliveryTask, WebhookDelivery
from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import SUBSYSTEM_OF, SUBSYSTEMS, EventType
from schemas.filters import Predicate
from schemas.transcode import EventJson


def expand_type_patterns(
    patterns: Iterable[str], field_name: str = "type", strict: bool = True
) -> frozenset[str]:
    """The catalog types matched by ``patterns`` (exact, ``instance.*``, ``*``, ``*.failed``).

    With ``strict``, a pattern that matches no catalog type is an error (a typo would otherwise
    silently select nothing).
    """
    selected: set[str] = set()
    for pattern in patterns:
        matched = {str(t) for t in EventType if fnmatchcase(str(t), pattern)}
        if strict and not matched:
            raise ContractError(field_name, f"{pattern!r} matches no event type of the catalog")
        selected |= matched
    return frozenset(selected)


@dataclass(frozen=True)
class RecordFilter:
    """Keep a record if it matches every given criterion; an empty criterion keeps all.

    Events are matched on tenant, type and instance; attempt records on tenant and webhook;
    dead letters on all four (through the event of their task).
    """

    tenants: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()  # expanded catalog types, see expand_type_patterns
    instances: frozenset[str] = frozenset()
    webhooks: frozenset[str] = frozenset()
    # A compiled payload filter over the event's JSON form (the target webhook's), or None.
    accepts: Predicate | None = None
    _tenant_keys: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tenant_keys", frozenset(t.encode() for t in self.tenants))

    @classmethod
    def of(
        cls,
        tenants: Iterable[str] = (),
        types: Iterable[str] = (),
        instances: Iterable[str] = (),
        webhooks: Iterable[str] = (),
    ) -> RecordFilter:
        """A filter from CLI values; type patterns are expanded (and checked) here."""
        patterns = list(types)
        return cls(
            tenants=frozenset(tenants),
            types=expand_type_patterns(patterns) if patterns else frozenset(),
            instances=frozenset(instances),
            webhooks=frozenset(webhooks),
        )

    def key_may_match(self, key: bytes | None) -> bool:
        """Cheap test before decoding: the record key is the tenant id (the contract's key)."""
        keys = self._tenant_keys
        return not keys or key in keys

    @property
    def tenant_keys(self) -> frozenset[bytes]:
        """The record keys ``key_may_match`` accepts; empty: every key (no tenant criterion)."""
        return self._tenant_keys

    @property
    def matches_every_event(self) -> bool:
        """Whether ``matches`` is true of every event (no tenant, type or instance criterion)."""
        return not (self.tenants or self.types or self.instances or self.accepts)

    def matches(self, event: Event) -> bool:
        """Whether an event passes the tenant, type and instance criteria and the filter."""
        if not self.matches_fields(event.type, event.tenant_id, event.instance_id):
            return False
        return self.accepts is None or self.accepts(event.to_json_dict())

    def matches_json(self, event: EventJson) -> bool:
        """``matches`` for an event in its JSON form (never built as ``Event``); its text is
        parsed once, only when a payload filter must look at it."""
        if not self.matches_fields(event.type, event.tenant_id, event.instance_id):
            return False
        return self.accepts is None or self.accepts(json.loads(event.json))

    def matches_fields(self, event_type: str, tenant_id: str, instance_id: str | None) -> bool:
        """Whether an event with these fields passes the tenant, type and instance criteria."""
        if self.tenants and tenant_id not in self.tenants:
            return False
        if self.types and event_type not in self.types:
            return False
        return not self.instances or instance_id in self.instances

    def matches_delivery(self, delivery: WebhookDelivery) -> bool:
        """Whether an attempt record passes the tenant and webhook criteria."""
        if self.tenants and delivery.tenant_id not in self.tenants:
            return False
        return not self.webhooks or delivery.webhook_id in self.webhooks

    def matches_task(self, task: DeliveryTask) -> bool:
        """Whether a delivery task passes the webhook criterion and its event the others."""
        if self.webhooks and task.webhook_id not in self.webhooks:
            return False
        return self.matches(task.event)

    def subsystems(self, chosen: Iterable[str] = ()) -> list[str]:
        """The subsystems worth reading: those chosen (default all) that hold a wanted type."""
        wanted = list(chosen) or list(SUBSYSTEMS)
        for subsystem in wanted:
            if subsystem not in SUBSYSTEMS:
                raise ContractError("subsystem", f"unknown subsystem {subsystem!r}")
        if not self.types:
            return wanted
        holding = {SUBSYSTEM_OF[t] for t in self.types}
        return [s for s in wanted if s in holding]
