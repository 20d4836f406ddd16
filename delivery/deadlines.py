"""The total-time limit of the attempts in flight, enforced by one periodic sweep.

aiohttp's own total timeout arms and disarms a timer for every request; at thousands of
requests a second that bookkeeping costs more of the event loop than one sweep of the attempts
in flight every ``interval`` seconds. An attempt is cut at most one interval past its limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Deadlines:
    """Attempts (their asyncio tasks) by deadline; ``sweep`` cancels those past it.

    An attempt calls ``start`` before its first await and ``finish`` after its last. When it
    sees CancelledError, ``cut`` tells whether the cancel was the deadline's (and takes that
    cancel back), or came from elsewhere, e.g. a shutdown, and must propagate.
    """

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        # The limit is the same for every attempt and the clock never goes back, so insertion
        # order (kept by dicts) is deadline order: a sweep stops at the first attempt not due.
        self._due: dict[asyncio.Task[object], float] = {}
        self._cut: set[asyncio.Task[object]] = set()

    def __len__(self) -> int:
        return len(self._due)

    def start(self, task: asyncio.Task[object]) -> None:
        """``task`` begins an attempt: it is cut if still running ``limit`` seconds from now."""
        self._due[task] = self._clock() + self.limit

    def finish(self, task: asyncio.Task[object]) -> None:
        """``task``'s attempt is over (whatever its end)."""
        self._due.pop(task, None)
        self._cut.discard(task)

    def cut(self, task: asyncio.Task[object]) -> bool:
        """After CancelledError in ``task``'s attempt: True if the deadline cut it and nothing
        else asked to cancel the task (the attempt then ends as a timeout), else False (the
        cancel must propagate)."""
        if task not in self._cut:
            return False
        self._cut.discard(task)
        return task.uncancel() == 0

    def sweep(self) -> int:
        """Cancel every attempt past its deadline; the number cancelled."""
        now = self._clock()
        late = []
        for task, deadline in self._due.items():
            if deadline > now:
                break
            if task not in self._cut:
                late.append(task)
        for task in late:
            self._cut.add(task)
            task.cancel()
        return len(late)

    async def enforce(self, interval: float) -> None:
        """Sweep every ``interval`` seconds, until cancelled. Nothing else limits an attempt's
        total time, so a failed sweep is logged and the next one goes ahead."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:
                log.exception("timeout sweep failed; sweeping again in %ss", interval)
