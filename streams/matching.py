"""Which webhooks receive an event: subscription patterns and a per-tenant index. Pure, no I/O.

A webhook's ``events`` list holds exact event types (``instance.created``), prefix wildcards
(``instance.*``) and ``*``; an empty list means every event (Ctrl Plane's subscribe-with-no-types).
Inactive webhooks receive nothing, and a tenant's events only ever reach that tenant's webhooks,
because the index is keyed by tenant first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.event import Event
from schemas.filters import Predicate, compile_filter
from schemas.webhook import Webhook

WILDCARD = "*"
_PREFIX_SUFFIX = ".*"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook's ``events`` list compiled for O(1)-ish matching."""

    match_all: bool
    exact: frozenset[str]
    prefixes: tuple[str, ...]  # "instance." for the pattern "instance.*"

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> Subscription:
        patterns = tuple(patterns)
        exact: set[str] = set()
        prefixes: list[str] = []
        match_all = not patterns
        for pattern in patterns:
            if pattern == WILDCARD:
                match_all = True
            elif pattern.endswith(_PREFIX_SUFFIX):
                prefixes.append(pattern[: -len(WILDCARD)])
            else:
                exact.add(pattern)
        return cls(match_all, frozenset(exact), tuple(sorted(set(prefixes))))

    def matches(self, event_type: str) -> bool:
        if self.match_all or event_type in self.exact:
            return True
        return any(event_type.startswith(prefix) for prefix in self.prefixes)


def matches(webhook: Webhook, event_type: str) -> bool:
    """Whether ``webhook`` (ignoring its tenant) receives events of ``event_type``."""
    return webhook.active and Subscription.compile(webhook.events).matches(event_type)


def event_document(event: Event) -> dict[str, Any]:
    """The event as a payload filter sees it: its JSON form, the already parsed payload reused
    (the decoder parsed the payload text once; nothing here parses JSON again)."""
    return event.to_json_dict()


@dataclass(frozen=True, slots=True)
class _Entry:
    webhook: Webhook
    subscription: Subscription
    # The compiled payload filter, built once per webhook version; None: no filter (the usual
    # case, which costs one identity test per matched webhook).
    accepts: Predicate | None = None


class WebhookIndex:
    """Active webhooks by tenant; ``match`` costs O(webhooks of the event's tenant).

    Writers (the config-topic reader thread) replace a tenant's whole entry tuple, so readers
    (the router's event loop) never need a lock: they see either the old or the new tuple.
    """

    def __init__(self, webhooks: Iterable[Webhook] = ()) -> None:
        self._by_tenant: dict[str, tuple[_Entry, ...]] = {}
        self._tenant_of: dict[str, str] = {}
        self._write_lock = threading.Lock()
        for webhook in webhooks:
            self.put(webhook)

    def put(self, webhook: Webhook) -> None:
        """Add or replace ``webhook`` (an inactive one is kept out of the index)."""
        with self._write_lock:
            self._remove_locked(webhook.id)
            if not webhook.active:
                return
            accepts = None
            if webhook.filter_json is not None:
                accepts = compile_filter(webhook.payload_filter)
            entry = _Entry(webhook, Subscription.compile(webhook.events), accepts)
            entries = self._by_tenant.get(webhook.tenant_id, ())
            self._by_tenant[webhook.tenant_id] = (*entries, entry)
            self._tenant_of[webhook.id] = webhook.tenant_id

    def remove(self, webhook_id: str) -> None:
        """Forget ``webhook_id`` (deleted by a tombstone); unknown ids are ignored."""
        with self._write_lock:
            self._remove_locked(webhook_id)

    def apply(self, webhook_id: str, webhook: Webhook | None) -> None:
        """Apply one change of the config topic: a new value, or None for a deletion."""
        if webhook is None:
            self.remove(webhook_id)
        else:
            self.put(webhook)

    def _remove_locked(self, webhook_id: str) -> None:
        tenant = self._tenant_of.pop(webhook_id, None)
        if tenant is None:
            return
        remaining = tuple(e for e in self._by_tenant.get(tenant, ()) if e.webhook.id != webhook_id)
        if remaining:
            self._by_tenant[tenant] = remaining
        else:
            self._by_tenant.pop(tenant, None)

    def match(self, tenant_id: str, event_type: str) -> list[Webhook]:
        """The active webhooks of ``tenant_id`` subscribed to ``event_type``."""
        return [
            entry.webhook
            for entry in self._by_tenant.get(tenant_id, ())
            if entry.subscription.matches(event_type)
        ]

    def match_event(
        self, event: Event, document: Callable[[Event], dict[str, Any]] = event_document
    ) -> list[Webhook]:
        """The active webhooks of the event's tenant subscribed to its type whose payload
        filter (if any) accepts it.

        The event's document is built at most once, and only when a type-matched webhook has a
        filter: an index without filters does exactly the work of :meth:`match`.
        """
        found: list[Webhook] = []
        doc: dict[str, Any] | None = None
        event_type = event.type
        for entry in self._by_tenant.get(event.tenant_id, ()):
            if not entry.subscription.matches(event_type):
                continue
            accepts = entry.accepts
            if accepts is not None:
                if doc is None:
                    doc = document(event)
                if not accepts(doc):
                    continue
            found.append(entry.webhook)
        return found

    def webhooks(self) -> Mapping[str, tuple[Webhook, ...]]:
        """Active webhooks by tenant (a snapshot, for diagnostics and tests)."""
        return {
            tenant: tuple(e.webhook for e in entries) for tenant, entries in self._by_tenant.items()
        }

    def __len__(self) -> int:
        return len(self._tenant_of)
