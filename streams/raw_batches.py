"""Raw record batches from Faust's own consumer, for the router: no per-message Faust machinery.

Faust turns every fetched record into a ``Message``, an ``Event``, a stream step and an ack
(a future, a weak reference, a lock and an interval check each): about 60 µs of CPU per record,
three times the router's own work. The router needs none of it: it reads whole batches and its
progress is a contiguous range of offsets. So the app's consumer (:class:`RawBatchMixin`, part
of ``streams.commits.CommitSafeConsumer``) subscribes to the router's topics itself and hands the
records aiokafka fetched (``getmany``) to :meth:`RawBatchMixin.raw_batches` as they are, in
chunks of at most ``raw_batch_size`` records; when the router finished a chunk, its offsets are
acked in bulk into Faust's own bookkeeping, so Faust's commits (with ``streams.commits``' fix),
rebalances and shutdown work as for any agent:

- a chunk's offsets are acked only after the loop body finished it (the router: after Kafka
  acknowledged its outputs); an exception in the body acks nothing;
- a revocation or a stop waits for the chunk in flight (``wait_empty``) and drops chunks not
  started (Faust seeks every assigned partition to its committed offset after a rebalance, so
  they are fetched again); a chunk from an earlier generation is never acked;
- a topic that users' processors read too (a Faust channel over it, so acks are enabled for it)
  still reaches their streams as Faust messages; an offset of such a topic counts as acked once
  both the router and Faust's streams are done with it, in whichever order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, Message
from faust.types.tuples import ack_lock

__all__ = ["RawBatch", "RawBatchMixin"]


@dataclass(slots=True)
class RawBatch:
    """Up to ``raw_batch_size`` records fetched in one ``getmany``, partition by partition."""

    generation: int
    #: aiokafka ``ConsumerRecord``s (``timestamp`` in ms, ``headers`` a sequence of pairs).
    records: list[Any] = field(default_factory=list)
    #: Offsets per partition, acked in bulk once the batch is done.
    offsets: dict[TP, list[int]] = field(default_factory=dict)


class RawBatchMixin:
    """The raw-batch path of Faust's aiokafka consumer (mixed into ``CommitSafeConsumer``).

    State is made on first use: Faust builds consumers its own way, and tests build bare ones.
    """

    #: Topics whose records go to :meth:`raw_batches` (none: the consumer is Faust's own).
    raw_topics: frozenset[str] = frozenset()
    raw_batch_size: int = 1000
    _raw_queue: asyncio.Queue[RawBatch] | None = None
    _raw_idle: asyncio.Event | None = None
    # Offsets of topics Faust's streams read too that one of the two sides finished.
    _half_acked: dict[TP, set[int]] | None = None

    # -- provided by faust's Consumer ------------------------------------------------------
    app: Any
    flow_active: bool
    should_stop: bool
    scheduler: Any
    _acked: Any
    _acked_index: Any
    _committed_offset: Any
    _read_offset: Any
    _buffered_partitions: set[TP]
    _unacked_messages: Any
    _n_acked: int

    def _queue(self) -> asyncio.Queue[RawBatch]:
        if self._raw_queue is None:
            # Two batches ahead: the fetch of the next overlaps the routing of this one, and
            # a slow router stops the fetcher (memory stays bounded) instead of buffering.
            self._raw_queue = asyncio.Queue(maxsize=2)
        return self._raw_queue

    def _idle(self) -> asyncio.Event:
        if self._raw_idle is None:
            self._raw_idle = asyncio.Event()
            self._raw_idle.set()
        return self._raw_idle

    def _halves(self) -> dict[TP, set[int]]:
        if self._half_acked is None:
            self._half_acked = {}
        return self._half_acked

    # -- the router's side -----------------------------------------------------------------

    async def raw_batches(self) -> AsyncGenerator[RawBatch, None]:
        """Batches of the raw topics, in fetch order; each one's offsets are acked when the
        loop body that received it finished without an exception (see the module doc)."""
        queue = self._queue()
        idle = self._idle()
        while True:
            batch = await queue.get()
            if not (self.flow_active and self._current(batch)):
                continue  # fetched before a rebalance: fetched again from the committed offset
            idle.clear()
            try:
                yield batch
                # Also during a revocation (the flow stopped, the generation not yet changed):
                # its commit then covers this batch, which the next owner need not replay.
                if self._current(batch):
                    self._ack_batch(batch)
            finally:
                idle.set()

    def _current(self, batch: RawBatch) -> bool:
        return bool(batch.generation == self.app.consumer_generation_id)

    def _ack_batch(self, batch: RawBatch) -> None:
        shared = self.app.topics.acks_enabled_for
        acked = 0
        for tp, offsets in batch.offsets.items():
            if shared(tp.topic):
                offsets = self._second_halves(tp, offsets)
            acked += self._ack_offsets(tp, offsets)
        self._n_acked += acked

    def _ack_offsets(self, tp: TP, offsets: Iterable[int]) -> int:
        """Faust's ``Consumer.ack`` bookkeeping for many offsets of one partition at once."""
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        fresh = [o for o in offsets if (committed is None or o >= committed) and o not in index]
        index.update(fresh)
        self._acked[tp].extend(fresh)
        return len(fresh)

    def _second_halves(self, tp: TP, offsets: Iterable[int]) -> list[int]:
        """Of ``offsets`` one side finished, those the other side had finished already."""
        halves = self._halves().setdefault(tp, set())
        done = []
        for offset in offsets:
            if offset in halves:
                halves.discard(offset)
                done.append(offset)
            else:
                halves.add(offset)
        return done

    # -- Faust's side ----------------------------------------------------------------------

    def ack(self, message: Message) -> bool:
        """Faust's streams finished ``message``: of a raw topic, it is half done only."""
        if message.topic not in self.raw_topics:
            return super().ack(message)  # type: ignore[misc, no-any-return]
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
        if message.generation_id != self.app.consumer_generation_id:
            return False
        done = self._second_halves(message.tp, (message.offset,))
        acked = self._ack_offsets(message.tp, done)
        self._n_acked += acked
        return bool(acked)

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Faust's channels' topics and the raw topics."""
        await super().subscribe({*topics, *self.raw_topics})  # type: ignore[misc]

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        """Faust's ``getmany``, with the raw topics' records queued as :class:`RawBatch`es.

        Records of a raw topic that Faust's streams read too are also yielded as messages.
        """
        if not self.raw_topics:
            async for item in super().getmany(timeout):  # type: ignore[misc]
                yield item
            return
        records, active = await self._wait_next_records(timeout)  # type: ignore[attr-defined]
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust does: a fetch that returned while the flow stopped is read again.
            await self.perform_seek()  # type: ignore[attr-defined]
            return
        generation = self.app.consumer_generation_id
        ours = {
            tp: batch
            for tp, batch in records.items()
            if tp.topic in self.raw_topics
            and (active is None or tp in active or tp in self._buffered_partitions)
        }
        for batch in self._chunks(generation, ours):
            await self._queue().put(batch)
        shared = self.app.topics.acks_enabled_for
        theirs = {
            tp: batch
            for tp, batch in records.items()
            if tp.topic not in self.raw_topics or (tp in ours and shared(tp.topic))
        }
        to_message = self._to_message  # type: ignore[attr-defined]
        for tp, record in self.scheduler.iterate(theirs):
            if generation != self.app.consumer_generation_id or not self.flow_active:
                break
            yield tp, to_message(tp, record)

    def _chunks(self, generation: int, records: dict[TP, list[Any]]) -> list[RawBatch]:
        """``records`` cut into batches of at most ``raw_batch_size``; the read offsets (and
        gaps, as Faust's fetcher notes them) of partitions only the router reads."""
        size = self.raw_batch_size
        shared = self.app.topics.acks_enabled_for
        batches = [RawBatch(generation)]
        for tp, fetched in records.items():
            if not shared(tp.topic):
                self._note_read(tp, fetched)
            for start in range(0, len(fetched), size):
                part = fetched[start : start + size]
                batch = batches[-1]
                if batch.records and len(batch.records) + len(part) > size:
                    batch = RawBatch(generation)
                    batches.append(batch)
                batch.records.extend(part)
                batch.offsets.setdefault(tp, []).extend(r.offset for r in part)
        return [b for b in batches if b.records]

    def _note_read(self, tp: TP, fetched: list[Any]) -> None:
        """Faust's read-offset and gap bookkeeping (``_drain_messages``), once per fetch: an
        offset Kafka skipped (a transaction marker, compaction) must not stop commits."""
        previous = self._read_offset[tp]
        for record in fetched:
            offset = record.offset
            if previous is not None and offset - previous > 1 and previous:
                self._gap_for(tp, previous + 1, offset - 1)
            previous = offset
        self._read_offset[tp] = previous

    def _gap_for(self, tp: TP, first: int, last: int) -> None:
        committed = self._committed_offset[tp]
        if committed is not None:
            first = max(first, committed)
        if first <= last:
            gaps = self._gap[tp]  # type: ignore[attr-defined]
            gaps.addi(first, last + 1)  # intervals exclude their end
            gaps.merge_overlaps()

    async def wait_empty(self) -> None:
        """Before a revocation's or a stop's commit: drop the batches not started, let the one
        in flight finish (and ack), then Faust's own wait for its streams."""
        queue = self._queue()
        while not queue.empty():
            queue.get_nowait()
        await self._idle().wait()
        await super().wait_empty()  # type: ignore[misc]

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        halves = self._halves()
        for tp in revoked:
            halves.pop(tp, None)
        await super().on_partitions_revoked(revoked)  # type: ignore[misc]
