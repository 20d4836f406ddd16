"""An index of the attempt log for ``GET /v1/deliveries``: newest first, per tenant, webhook
and event, maintained as records arrive, with keyset (cursor) pagination.

Without it every query copied, filtered and sorted the whole log on the event loop. Here each
dimension keeps its deliveries' sort keys in an ascending list (``bisect``), so a page costs
O(log n + what it reads): a query walks the most selective list given (event, webhook,
tenant, else all) from its cursor down, checks the remaining filters on the records, and
stops after ``limit`` matches.

The order is ``(updated_at, id)`` descending, as before. A cursor is the sort key of the last
delivery returned, opaque to clients (URL-safe base64); the next page starts strictly below
it, so pages never repeat an item. A delivery updated between two pages moves to the front of
the order: a walk already past that point does not see it again (keyset pagination).
"""

from __future__ import annotations

import base64
import binascii
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schemas.delivery_records import DeliveryStatus, WebhookDelivery
from schemas.timestamps import to_epoch_micros

SortKey = tuple[int, str]  # (updated_at in epoch microseconds, delivery id)

_ALL = ("all", "")


def sort_key(delivery: WebhookDelivery) -> SortKey:
    """Where ``delivery`` sits in the order (ascending; pages read it backwards)."""
    return to_epoch_micros(delivery.updated_at), delivery.id


def encode_cursor(key: SortKey) -> str:
    """The opaque cursor that continues after ``key``."""
    raw = f"{key[0]}.{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """The sort key in ``cursor``; ValueError if it is not one this gateway made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, _, delivery_id = raw.partition(".")
        if not delivery_id or not micros.lstrip("-").isdigit():
            raise ValueError(cursor)
        return int(micros), delivery_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("is not a cursor returned by this API") from None


@dataclass(frozen=True)
class DeliveryFilter:
    """What a page selects (None: any)."""

    tenant_id: str | None = None
    event_id: str | None = None
    webhook_id: str | None = None
    status: DeliveryStatus | None = None

    def matches(self, delivery: WebhookDelivery) -> bool:
        return (
            (self.tenant_id is None or delivery.tenant_id == self.tenant_id)
            and (self.event_id is None or delivery.event_id == self.event_id)
            and (self.webhook_id is None or delivery.webhook_id == self.webhook_id)
            and (self.status is None or delivery.status == self.status)
        )

    def dimension(self) -> tuple[str, str]:
        """The most selective index this filter can walk."""
        if self.event_id is not None:
            return "event", self.event_id
        if self.webhook_id is not None:
            return "webhook", self.webhook_id
        if self.tenant_id is not None:
            return "tenant", self.tenant_id
        return _ALL


@dataclass(frozen=True)
class Page:
    """One page of deliveries and the cursor of the next one (None: this was the last)."""

    deliveries: list[WebhookDelivery]
    next_cursor: str | None


class DeliveryIndex:
    """Sort keys of every delivery by dimension. ``on_change`` is a view listener: it runs on
    the view's thread while requests read on the event loop, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, SortKey] = {}  # delivery id -> its current key
        self._lists: dict[tuple[str, str], list[SortKey]] = {}

    @staticmethod
    def _dimensions(delivery: WebhookDelivery) -> tuple[tuple[str, str], ...]:
        return (
            _ALL,
            ("tenant", delivery.tenant_id),
            ("webhook", delivery.webhook_id),
            ("event", delivery.event_id),
        )

    def on_change(
        self, delivery_id: str, old: WebhookDelivery | None, new: WebhookDelivery | None
    ) -> None:
        """Move ``delivery_id`` to its new place (``new`` None: a tombstone removes it)."""
        with self._lock:
            previous = self._keys.pop(delivery_id, None)
            if previous is not None and old is not None:
                for dimension in self._dimensions(old):
                    self._remove(dimension, previous)
            if new is not None:
                key = sort_key(new)
                self._keys[delivery_id] = key
                for dimension in self._dimensions(new):
                    insort(self._lists.setdefault(dimension, []), key)

    def _remove(self, dimension: tuple[str, str], key: SortKey) -> None:
        keys = self._lists.get(dimension)
        if keys is None:
            return
        position = bisect_left(keys, key)
        if position < len(keys) and keys[position] == key:
            del keys[position]
        if not keys:
            del self._lists[dimension]

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def page(
        self,
        where: DeliveryFilter,
        limit: int,
        after: SortKey | None,
        get: Callable[[str], WebhookDelivery | None],
    ) -> Page:
        """Up to ``limit`` deliveries matching ``where``, newest first, below ``after``.

        ``get`` reads a delivery's current record (the view).
        """
        found: list[WebhookDelivery] = []
        last: SortKey | None = None
        with self._lock:
            for key in self._walk(where.dimension(), after):
                delivery = get(key[1])
                # A record updated since its key was filed shows up at its new place instead.
                if delivery is None or sort_key(delivery) != key or not where.matches(delivery):
                    continue
                if len(found) == limit:
                    return Page(found, encode_cursor(last) if last is not None else None)
                found.append(delivery)
                last = key
        return Page(found, None)

    def _walk(self, dimension: tuple[str, str], after: SortKey | None) -> Iterator[SortKey]:
        keys = self._lists.get(dimension, [])
        start = len(keys) if after is None else bisect_left(keys, after)
        for position in range(start - 1, -1, -1):
            yield keys[position]
