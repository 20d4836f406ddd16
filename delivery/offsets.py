"""Which offset of a partition is safe to commit while many of its records are in flight."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any


class PartitionProgress:
    """Offsets started and finished on one partition (for one assignment of it).

    Records finish out of order; the committable offset is the lowest unfinished one, or one
    past the highest started when none is unfinished, so a crash never skips unfinished work.
    """

    def __init__(self) -> None:
        self._unfinished: set[int] = set()
        self._heap: list[int] = []
        self._next: int | None = None
        self.committed: int | None = None

    def start(self, offset: int) -> None:
        self._unfinished.add(offset)
        heapq.heappush(self._heap, offset)
        self._next = offset + 1 if self._next is None else max(self._next, offset + 1)

    def finish(self, offset: int) -> None:
        self._unfinished.discard(offset)
        while self._heap and self._heap[0] not in self._unfinished:
            heapq.heappop(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._unfinished)

    def committable(self) -> int | None:
        """The offset to commit now (the next record to read after a restart), if any."""
        if self._heap:
            return self._heap[0]
        return self._next

    def to_commit(self) -> int | None:
        """``committable()`` if it moved past the last commit, else None."""
        offset = self.committable()
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset


class Outputs:
    """The records one task produced, counted until Kafka acknowledged every one of them.

    A task's offset is finished only when all its outputs are acknowledged. The count starts
    at one, a seal, so acknowledgements that arrive while the task is still producing (a full
    local queue makes the producer serve callbacks) cannot finish it early; ``seal`` drops it.
    ``done`` runs once, when the last output is acknowledged; after a failed output it never runs.

    ``refused(outputs, error, record)`` hears of a refused output: False leaves the task
    failed; True means it takes over, adding any replacement outputs (``add``) before it counts
    the refused one as settled (``acked``). ``owner`` is whatever the caller needs to do so.
    """

    __slots__ = (
        "_done",
        "_refused",
        "_remaining",
        "failed",
        "owner",
        "records",
        "replaced",
        "resent",
    )

    def __init__(
        self,
        done: Callable[[], None],
        refused: Callable[[Outputs, Any, Any], bool] | None = None,
        owner: Any = None,
    ) -> None:
        self._done = done
        self._refused = refused
        self._remaining = 1
        self.failed = False
        self.owner = owner
        self.replaced = False  # the task's outputs were replaced once (e.g. by a dead letter)
        self.resent = False  # a refused output was produced once more, alone
        # What was produced, as it was: a delivery report's message lacks the headers.
        self.records: Sequence[Any] = ()

    def __call__(self, error: Any, record: Any) -> None:
        """The delivery report of one output, in the Kafka producer's ``on_delivery`` form:
        acknowledged when ``error`` is None, else refused (``refused`` hears of it)."""
        if error is None:
            self._release()
            return
        if self._refused is None or not self._refused(self, error, record):
            self.failed = True

    def add(self) -> None:
        """One more output is on its way."""
        self._remaining += 1

    def acked(self) -> None:
        """One output was acknowledged (or settled otherwise)."""
        self._release()

    def fail(self) -> None:
        """One output was refused: the task must stay unfinished."""
        self.failed = True

    def seal(self) -> None:
        """The task produced everything it will."""
        self._release()

    def _release(self) -> None:
        self._remaining -= 1
        if self._remaining == 0 and not self.failed:
            self._done()
