"""Readers that run only while someone asks: started by the first request, stopped when idle.

The gateway's attempt-log index (``GET /v1/deliveries``) and the portal's feed tail topics that
grow with every event (the attempt log, the deliveries topic). Tailing them all the time cost
the gateway CPU for every event flowing through the pipeline although it is not in the path
(about 46 µs per event, issue 20). An :class:`OnDemand` holds such a reader: ``await get()``
starts it (and returns once it has caught up with its topics, so an answer is at least as
current as one from a reader that had been tailing all along), later requests find it live,
and once ``idle`` seconds pass without a request it is stopped and dropped (its memory too).
The next request starts a fresh one, which reads its topics again from the start of their
retention, as a freshly started gateway does: the first answer after an idle period takes
that long, the ones after it are immediate.

Metrics: ``cpevents_gateway_reader_starts_total{reader}`` (starts on demand) and
``cpevents_gateway_readers_live{reader}`` (1 while running).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge

from plumbing.metrics import counter, gauge

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds without a request after which a reader stops (the portal polls every 2 s while a
#: page is open, so an open page keeps its readers live).
DEFAULT_IDLE = 60.0


@functools.cache
def _metrics() -> tuple[Counter, Gauge]:
    starts = counter(
        "cpevents_gateway_reader_starts_total",
        "Readers of the gateway (attempt-log index, portal feed) started because a request "
        "needed them; they stop after an idle period",
        ("reader",),
    )
    live = gauge(
        "cpevents_gateway_readers_live",
        "Gateway readers running (1) or stopped while nobody asks (0)",
        ("reader",),
    )
    return starts, live


class OnDemand(Generic[T]):
    """A reader ``start()`` makes on the first ``get()``; ``stop(reader)`` (blocking, run off
    the loop) after ``idle`` seconds without one. ``name`` labels logs and metrics.

    Use from one event loop. A reader stopped while a request still holds it stays readable
    (its data is only no longer updated): callers take it once per request."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[T]],
        stop: Callable[[T], None],
        idle: float = DEFAULT_IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle <= 0:
            raise ValueError("idle: must be > 0 seconds")
        self.name = name
        self._start = start
        self._stop = stop
        self._idle = idle
        self._clock = clock
        self._current: T | None = None
        self._last_use = 0.0
        self._starting = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        starts, live = _metrics()
        self._starts = starts.labels(name)
        self._live = live.labels(name)
        self._live.set(0)

    @property
    def current(self) -> T | None:
        """The running reader, or None while stopped (nothing is started)."""
        return self._current

    async def get(self) -> T:
        """The running reader, started (and caught up) first if it is not running."""
        self._last_use = self._clock()
        current = self._current
        if current is not None:
            return current
        async with self._starting:
            if self._current is None:
                started = self._clock()
                self._current = await self._start()
                self._starts.inc()
                self._live.set(1)
                log.info(
                    "%s: started for a request (caught up in %.2fs); stops after %.0fs idle",
                    self.name,
                    self._clock() - started,
                    self._idle,
                )
                self._reaper = asyncio.create_task(self._reap(), name=f"idle:{self.name}")
            return self._current

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._last_use + self._idle - self._clock()))
            if self._clock() - self._last_use >= self._idle:
                break
        log.info("%s: no request for %.0fs, stopping it", self.name, self._idle)
        await self._shut()

    async def _shut(self) -> None:
        reader, self._current = self._current, None
        self._live.set(0)
        if reader is not None:
            await asyncio.to_thread(self._stop, reader)

    async def close(self) -> None:
        """Stop the reader if it runs (at shutdown)."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper is not asyncio.current_task():
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        async with self._starting:
            await self._shut()
