"""The event bus protocol every application codes against (Ctrl Plane's Go ``event.Bus``).

``MemoryBus`` (embedded, the default) and ``KafkaBus`` (durable) both implement it, so an
application switches between them by construction only (see ``producers.app``).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from schemas.event import Event
from schemas.event_types import EventType, parse_event_type

Handler = Callable[[Event], Awaitable[None]]
"""``async def handler(event) -> None``."""


class Subscription:
    """A handler's registration on a bus. ``unsubscribe()`` stops it; calling it twice is safe."""

    def __init__(
        self, name: str, types: frozenset[EventType], on_unsubscribe: Callable[[], None]
    ) -> None:
        self.name = name
        self.types = types
        self._on_unsubscribe = on_unsubscribe
        self._lock = threading.Lock()
        self._active = True

    @property
    def active(self) -> bool:
        return self._active

    def matches(self, event_type: str) -> bool:
        """Whether this subscription wants events of ``event_type`` (no types: every event)."""
        return not self.types or event_type in self.types

    def unsubscribe(self) -> None:
        """Stop delivering to the handler. Events already being handled finish."""
        with self._lock:
            if not self._active:
                return
            self._active = False
        self._on_unsubscribe()

    def __repr__(self) -> str:
        types = ",".join(sorted(self.types)) or "*"
        return f"Subscription(name={self.name!r}, types={types}, active={self._active})"


def parse_types(types: Iterable[EventType | str]) -> frozenset[EventType]:
    """The catalog types named by ``types``; a ContractError names an unknown one."""
    return frozenset(parse_event_type(t, "types") for t in types)


def handler_name(handler: Handler) -> str:
    """A stable name for a handler (module + qualified name): the default subscription name."""
    module = getattr(handler, "__module__", None) or "handler"
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


class Bus(Protocol):
    """Publish events; subscribe handlers to some or every event type."""

    async def publish(self, event: Event) -> None:
        """Publish one event. Returns once the bus accepted it (for durable buses: stored)."""
        ...

    def subscribe(self, handler: Handler, *types: EventType | str) -> Subscription:
        """Call ``handler`` for every later event of ``types`` (none given: every type)."""
        ...

    async def close(self) -> None:
        """Stop subscriptions and flush what was published."""
        ...
