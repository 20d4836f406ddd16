"""The worker's partitions: what each has in flight, which are held or paused, what to commit.

Shared by the event loop (admitting records, settling tasks, committing) and the consumer
thread (rebalance callbacks), hence one lock around every change. Consumer calls themselves
(pause, resume, seek, commit) stay with the worker: this class only says which partitions.
"""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import TopicPartition

from delivery.offsets import PartitionProgress

PartitionKey = tuple[str, int]


class PartitionBook:
    """Progress per assigned partition, tier partitions held until their head is due, the
    count of tasks in flight against ``concurrency``, and the throttle (every partition paused
    while that limit stays reached).

    At the limit, polling waits until the tasks in flight are down to a low-water mark
    (``concurrency`` minus up to ``batch``), so records are taken in batches rather than one
    per settled task; :attr:`room` is set while there is that much room.
    """

    def __init__(self, concurrency: int, batch: int) -> None:
        self._lock = threading.Lock()
        self._progress: dict[PartitionKey, PartitionProgress] = {}
        self._held: dict[PartitionKey, float] = {}  # partition -> when its head is due (epoch s)
        self._concurrency = concurrency
        self._low_water = concurrency - max(1, min(batch, concurrency // 4))
        self.in_flight = 0  # admitted tasks whose outputs are not all acknowledged yet
        self.room = asyncio.Event()
        self.room.set()
        self.throttled = False

    # -- assignment (the consumer thread) -------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> bool:
        """Track ``partitions`` afresh; True if they are to join the others' pause."""
        with self._lock:
            for tp in partitions:
                self._progress[(tp.topic, tp.partition)] = PartitionProgress()
                self._held.pop((tp.topic, tp.partition), None)
            return self.throttled

    def forget(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Stop tracking ``partitions`` (revoked or lost); the offsets still to commit."""
        offsets = []
        with self._lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                progress = self._progress.pop(key, None)
                self._held.pop(key, None)
                offset = progress.to_commit() if progress is not None else None
                if offset is not None:
                    offsets.append(TopicPartition(tp.topic, tp.partition, offset))
        return offsets

    # -- records and tasks (the event loop) -----------------------------------------------------

    def start(self, key: PartitionKey, offset: int) -> PartitionProgress | None:
        """Count the record at ``offset`` in flight; None (nothing counted) if its partition
        is not ours any more, or is held (the record is read again once it resumes)."""
        with self._lock:
            progress = self._progress.get(key)
            if progress is None or key in self._held:
                return None
            progress.start(offset)
            self.in_flight += 1
            if self.in_flight > self._low_water:
                self.room.clear()
            return progress

    def hold(self, key: PartitionKey, until: float) -> bool:
        """Hold the partition until ``until`` (its head is not due); False if it is not ours
        or held already. The caller pauses it and rewinds to the head."""
        with self._lock:
            if key not in self._progress or key in self._held:
                return False
            self._held[key] = until
            return True

    def done(self, progress: PartitionProgress, offset: int) -> None:
        """Every output of the task at ``offset`` is acknowledged: its offset may be committed."""
        with self._lock:
            progress.finish(offset)
            self.in_flight -= 1
            if self.in_flight <= self._low_water:
                self.room.set()

    def owns(self, key: PartitionKey, progress: PartitionProgress) -> bool:
        """Is ``progress`` still this worker's progress on the partition (not reassigned)?"""
        with self._lock:
            return self._progress.get(key) is progress

    # -- pausing and committing (the event loop) ------------------------------------------------

    def throttle(self) -> list[TopicPartition]:
        """Note every partition paused (the in-flight limit stayed reached); the partitions."""
        with self._lock:
            self.throttled = True
            return [TopicPartition(t, p) for t, p in self._progress]

    def to_resume(self, now: float) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """What to resume at ``now`` (epoch s): the held partitions now due, and, when the
        throttle ends (in flight down to half the limit), every partition not held."""
        with self._lock:
            due = [key for key, at in self._held.items() if at <= now]
            for key in due:
                del self._held[key]
            resume = self.throttled and self.in_flight <= self._concurrency // 2
            if resume:
                self.throttled = False
            held_due = [] if self.throttled else [TopicPartition(t, p) for t, p in due]
            running = (
                [TopicPartition(t, p) for t, p in self._progress if (t, p) not in self._held]
                if resume
                else []
            )
        return held_due, running

    def to_commit(self) -> list[TopicPartition]:
        """The offsets that moved since the last commit, noted as committed."""
        offsets = []
        with self._lock:
            for (topic, partition), progress in self._progress.items():
                offset = progress.to_commit()
                if offset is not None:
                    offsets.append(TopicPartition(topic, partition, offset))
                    progress.committed = offset
        return offsets
