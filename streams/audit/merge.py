"""Merge per-partition record streams into one timestamp-ordered stream, with bounded buffers.

Each partition is in offset order; the merged output is ordered by the sort key (timestamp, then
topic, partition and offset, so ties always break the same way and replays are reproducible). A
record can only be emitted once every partition that may still produce an earlier one has a
record buffered, so the merge waits for "starving" partitions and asks its caller to stop
fetching partitions whose buffer is full: memory is bounded by partitions x capacity, however
long the range.

The output is always that of the classic k-way merge (repeatedly take the smallest head), which
depends only on the sources' sequences, never on how their records arrived. While every source
has come in sort order (timestamps never going back within a partition, the usual case), that
is everything up to the smallest "last buffered" record, in sorted order: it is cut with bisect
and sorted in C, batch by batch. A source whose timestamps go back switches the merge to a heap
of heads, record by record, which gives the same output in the general case.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Set
from typing import Any, Generic, TypeVar, cast

R = TypeVar("R")
S = TypeVar("S", bound=Hashable)


class BoundedMerge(Generic[S, R]):
    """A k-way merge fed incrementally. ``push`` records, ``finish`` sources, ``pop_ready``.

    ``sort_key`` None compares records themselves (cheapest: no call per record).

    In follow mode a source at its current end can be marked ``idle``: the merge then stops
    waiting for it (a quiet partition must not hold back a live tail), at the price of strict
    order for records that arrive on it later.
    """

    def __init__(
        self,
        sources: Iterable[S],
        sort_key: Callable[[R], Any] | None = None,
        capacity: int = 500,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._key = sort_key
        self._capacity = capacity
        # Per source: its records in arrival order; those before _read[source] are merged.
        self._buffers: dict[S, list[R]] = {s: [] for s in sources}
        self._read: dict[S, int] = dict.fromkeys(self._buffers, 0)
        self._live: set[S] = set(self._buffers)
        self._idle: set[S] = set()
        self._starving: set[S] = set(self._buffers)
        # Sorted mode: how far each buffer is known to be in order, and the key it ended on.
        self._ordered = True
        self._checked: dict[S, int] = dict.fromkeys(self._buffers, 0)
        self._previous: dict[S, Any] = {}
        # Heap mode: (key of the head, tie-break, source) of every source with records.
        self._heads: list[tuple[Any, int, S]] = []
        self._tiebreak = itertools.count()

    def push(self, source: S, record: R) -> None:
        """Append ``record`` to ``source``'s buffer (records of a source come in its order)."""
        buffer = self._buffers[source]
        if len(buffer) == self._read[source]:
            self._starving.discard(source)
            if not self._ordered:
                self._push_head(source, record)
        self._idle.discard(source)
        buffer.append(record)

    def extend(self, source: S, records: list[R]) -> None:
        """``push`` each of ``records`` (cheaper: the reader hands over a batch per source)."""
        if records:
            self.push(source, records[0])
            self._buffers[source] += records[1:]

    def finish(self, source: S) -> None:
        """``source`` will produce no more records; its buffered ones are still merged."""
        self._live.discard(source)
        self._starving.discard(source)
        self._idle.discard(source)

    def set_idle(self, source: S) -> None:
        """Stop waiting for ``source`` until it produces again (follow mode)."""
        if source in self._live and self._pending(source) == 0:
            self._idle.add(source)
            self._starving.discard(source)

    def pop_ready(self) -> list[R]:
        """The records that can be emitted now: no live source could still produce an earlier one.

        Returned as one list (not yielded one by one): this runs for every replayed record.
        """
        if self._ordered and not self._check_order():
            self._start_heap()
        return self._pop_sorted() if self._ordered else self._pop_heap()

    # -- sorted mode ---------------------------------------------------------------------------

    def _check_order(self) -> bool:
        """Whether every source's records so far came in sort order."""
        key = self._key
        for source, buffer in self._buffers.items():
            checked = self._checked[source]
            if checked == len(buffer):
                continue
            fresh = buffer[checked:]
            keys: list[Any] = fresh if key is None else [key(record) for record in fresh]
            previous = self._previous.get(source)
            # Timsort checks an already sorted list in one pass.
            if (previous is not None and keys[0] < previous) or keys != sorted(keys):
                return False
            self._previous[source] = keys[-1]
            self._checked[source] = len(buffer)
        return True

    def _pop_sorted(self) -> list[R]:
        if self._starving:
            return []
        key = self._key
        # Records (or keys) are only known to be comparable: typed Any for bisect and sort.
        buffers = cast(dict[S, list[Any]], self._buffers)
        # Nothing later than the smallest last record of a source we wait for can be emitted
        # yet: that source may still produce records just after it.
        bounds = [buffers[s][-1] for s in self._live if s not in self._idle]
        bound = None
        if bounds:
            bound = min(bounds) if key is None else key(min(bounds, key=key))
        ready: list[Any] = []
        for source, buffer in buffers.items():
            if not buffer:
                continue
            if bound is None:
                count = len(buffer)
            elif key is None:
                count = bisect_right(buffer, bound)
            else:
                count = bisect_right(buffer, bound, key=key)
            if count:
                ready += buffer[:count]
                del buffer[:count]
                self._checked[source] -= count
            if not buffer and source in self._live and source not in self._idle:
                self._starving.add(source)
        # The runs of each source, merged by timsort in C.
        ready.sort(key=key)
        return ready

    # -- heap mode ----------------------------------------------------------------------------

    def _start_heap(self) -> None:
        self._ordered = False
        for source, buffer in self._buffers.items():
            if buffer:
                self._push_head(source, buffer[0])

    def _push_head(self, source: S, record: R) -> None:
        key = record if self._key is None else self._key(record)
        heapq.heappush(self._heads, (key, next(self._tiebreak), source))

    def _pop_heap(self) -> list[R]:
        ready: list[R] = []
        heads, starving, buffers, read = self._heads, self._starving, self._buffers, self._read
        key, tiebreak, append = self._key, self._tiebreak, ready.append
        while heads and not starving:
            source = heads[0][2]
            buffer = buffers[source]
            position = read[source]
            append(buffer[position])
            position += 1
            if position < len(buffer):
                if position >= self._capacity:
                    # Drop the merged prefix now and then, so memory stays bounded.
                    del buffer[:position]
                    position = 0
                read[source] = position
                head = buffer[position]
                # One sift instead of a pop and a push.
                heapq.heapreplace(
                    heads, (head if key is None else key(head), next(tiebreak), source)
                )
                continue
            buffer.clear()
            read[source] = 0
            heapq.heappop(heads)
            if source in self._live and source not in self._idle:
                starving.add(source)
        return ready

    # -- state --------------------------------------------------------------------------------

    def _pending(self, source: S) -> int:
        return len(self._buffers[source]) - self._read[source]

    def is_full(self, source: S) -> bool:
        """Whether the caller should stop fetching ``source`` for now."""
        return self._pending(source) >= self._capacity

    @property
    def starving(self) -> frozenset[S]:
        """Live sources the merge is waiting for."""
        return frozenset(self._starving)

    @property
    def live(self) -> frozenset[S]:
        """Sources that may still produce records."""
        return frozenset(self._live)

    @property
    def live_sources(self) -> Set[S]:
        """The live sources as a read-only view that follows ``finish`` (no copy per call)."""
        return self._live

    @property
    def done(self) -> bool:
        """Every source finished and every buffered record emitted."""
        return not self._live and not any(self._pending(s) for s in self._buffers)

    def buffered(self) -> int:
        return sum(self._pending(s) for s in self._buffers)
