"""Application wiring: the object a Ctrl Plane service builds once and passes around.

Mirrors Ctrl Plane's Go ``app.New(app.WithEventBus(...))``: the in-memory bus by default, any other
Bus (e.g. ``KafkaBus``) by option::

    app = App()                                   # embedded MemoryBus
    app = App(event_bus=KafkaBus(settings))       # durable
    app = App.new(with_event_bus(KafkaBus(settings)))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from producers.bus import Bus
from producers.memory_bus import MemoryBus


@dataclass
class _Options:
    event_bus: Bus | None = None


Option = Callable[[_Options], None]


def with_event_bus(bus: Bus) -> Option:
    """Use ``bus`` instead of the in-memory default."""

    def apply(options: _Options) -> None:
        options.event_bus = bus

    return apply


@dataclass
class App:
    """Holds the application's shared services; ``events`` is its event bus."""

    event_bus: Bus | None = None
    events: Bus = field(init=False)

    def __post_init__(self) -> None:
        self.events = self.event_bus if self.event_bus is not None else MemoryBus()

    @classmethod
    def new(cls, *options: Option) -> Self:
        """Build an App from functional options (Ctrl Plane's Go ``app.New``)."""
        chosen = _Options()
        for option in options:
            option(chosen)
        return cls(event_bus=chosen.event_bus)

    async def close(self) -> None:
        """Close the bus (flushing a durable one)."""
        await self.events.close()
