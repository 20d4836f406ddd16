"""Merge per-partition record streams into one timestamp-ordered stream, with bounded buffers.

Each partition is in offset order; the merged output is ordered by the sort key (timestamp, then
topic, partition and offset, so ties always break the same way and replays are reproducible). A
record can only be emitted once every partition that may still produce an earlier one has a
record buffered, so the merge waits for "starving" partitions and asks its caller to stop
fetching partitions whose buffer is full: memory is bounded by partitions x capacity, however
long the range.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Set
from typing import Any, Generic, TypeVar

R = TypeVar("R")
S = TypeVar("S", bound=Hashable)


class BoundedMerge(Generic[S, R]):
    """A k-way merge fed incrementally. ``push`` records, ``finish`` sources, ``pop_ready``.

    In follow mode a source at its current end can be marked ``idle``: the merge then stops
    waiting for it (a quiet partition must not hold back a live tail), at the price of strict
    order for records that arrive on it later.
    """

    def __init__(
        self, sources: Iterable[S], sort_key: Callable[[R], Any], capacity: int = 500
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._key = sort_key
        self._capacity = capacity
        self._buffers: dict[S, deque[R]] = {s: deque() for s in sources}
        self._live: set[S] = set(self._buffers)
        self._idle: set[S] = set()
        self._starving: set[S] = set(self._buffers)
        self._heads: list[tuple[Any, int, S]] = []
        # Equal sort keys (never across sources in practice) stay stable.
        self._tiebreak = itertools.count()

    def push(self, source: S, record: R) -> None:
        """Append ``record`` to ``source``'s buffer (records of a source come in its order)."""
        buffer = self._buffers[source]
        if not buffer:
            self._push_head(source, record)
            self._starving.discard(source)
        self._idle.discard(source)
        buffer.append(record)

    def finish(self, source: S) -> None:
        """``source`` will produce no more records; its buffered ones are still merged."""
        self._live.discard(source)
        self._starving.discard(source)
        self._idle.discard(source)

    def set_idle(self, source: S) -> None:
        """Stop waiting for ``source`` until it produces again (follow mode)."""
        if source in self._live and not self._buffers[source]:
            self._idle.add(source)
            self._starving.discard(source)

    def pop_ready(self) -> list[R]:
        """The records that can be emitted now: no live source could still produce an earlier one.

        Returned as one list (not yielded one by one): this runs for every replayed record.
        """
        ready: list[R] = []
        heads, starving, buffers = self._heads, self._starving, self._buffers
        key, tiebreak, append = self._key, self._tiebreak, ready.append
        while heads and not starving:
            source = heads[0][2]
            buffer = buffers[source]
            append(buffer.popleft())
            if buffer:
                # One sift instead of a pop and a push.
                heapq.heapreplace(heads, (key(buffer[0]), next(tiebreak), source))
                continue
            heapq.heappop(heads)
            if source in self._live and source not in self._idle:
                starving.add(source)
        return ready

    def _push_head(self, source: S, record: R) -> None:
        heapq.heappush(self._heads, (self._key(record), next(self._tiebreak), source))

    def is_full(self, source: S) -> bool:
        """Whether the caller should stop fetching ``source`` for now."""
        return len(self._buffers[source]) >= self._capacity

    @property
    def starving(self) -> frozenset[S]:
        """Live sources the merge is waiting for."""
        return frozenset(self._starving)

    @property
    def live(self) -> frozenset[S]:
        """Ss that may still produce records."""
        return frozenset(self._live)

    @property
    def live_sources(self) -> Set[S]:
        """The live sources as a read-only view that follows ``finish`` (no copy per call)."""
        return self._live

    def is_live(self, source: S) -> bool:
        return source in self._live

    @property
    def done(self) -> bool:
        """Every source finished and every buffered record emitted."""
        return not self._live and not self._heads

    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())
