"""The embedded, in-process bus: Ctrl Plane's in-memory event bus semantics."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

from producers.bus import Handler, Subscription, handler_name, parse_types
from schemas.event import Event
from schemas.event_types import EventType

log = logging.getLogger(__name__)


class BusClosedError(RuntimeError):
    """The bus was closed; it accepts no more events."""


class MemoryBus:
    """Delivers each event to the matching handlers in subscription order, one after another.

    A failing handler is logged and does not stop the others. The last ``history`` events are
    kept for ``recent_events``. Handlers may unsubscribe (themselves or others) while an event
    is being delivered: a handler unsubscribed before its turn is not called.
    """

    def __init__(self, history: int = 1000) -> None:
        if history < 0:
            raise ValueError("history: must be >= 0")
        self._subscriptions: list[tuple[Subscription, Handler]] = []
        self._history: deque[Event] = deque(maxlen=history)
        self._closed = False

    async def publish(self, event: Event) -> None:
        """Record ``event`` and await every matching handler in subscription order."""
        if self._closed:
            raise BusClosedError("bus is closed")
        self._history.append(event)
        # A snapshot, so (un)subscribing during delivery never skips or repeats a handler.
        for subscription, handler in list(self._subscriptions):
            if not subscription.active or not subscription.matches(event.type):
                continue
            try:
                await handler(event)
            except Exception:
                log.exception(
                    "handler %s failed on event %s (%s)", subscription.name, event.id, event.type
                )

    async def publish_many(self, events: Iterable[Event]) -> list[Event]:
        """Publish ``events`` in order."""
        published = []
        for event in events:
            await self.publish(event)
            published.append(event)
        return published

    def subscribe(
        self, handler: Handler, *types: EventType | str, name: str | None = None
    ) -> Subscription:
        """Call ``handler`` for later events of ``types`` (none: every type)."""
        subscription = Subscription(
            name or handler_name(handler),
            parse_types(types),
            on_unsubscribe=lambda: self._remove(subscription),
        )
        self._subscriptions.append((subscription, handler))
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions = [(s, h) for s, h in self._subscriptions if s is not subscription]

    def recent_events(self, limit: int = 100, *types: EventType | str) -> list[Event]:
        """The last ``limit`` events (of ``types``, if given), oldest first."""
        if limit <= 0:
            return []
        wanted = parse_types(types)
        matching = [e for e in self._history if not wanted or e.type in wanted]
        return matching[-limit:]

    async def close(self) -> None:
        """Refuse further events and drop every subscription."""
        self._closed = True
        for subscription, _ in list(self._subscriptions):
            subscription.unsubscribe()
