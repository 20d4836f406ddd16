"""The router's raw batches from Faust's consumer (streams/raw_batches.py): chunking, bulk acks
only after the router finished a batch, nothing acked for a failed or stale batch, and topics
Faust's streams read too acked once both sides are done."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP
from intervaltree import IntervalTree

from streams.commits import CommitSafeConsumer
from streams.raw_batches import RawBatch

EVENTS = "t.events.instance"
SHARED = "t.events.deploy"  # a topic a processor reads too
OTHER = "t.other"  # a topic only Faust's streams read
P0, P1, S0, O0 = TP(EVENTS, 0), TP(EVENTS, 1), TP(SHARED, 0), TP(OTHER, 0)


def record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 1_700_000_000_000, 0, b"k", b"v", None, 1, 1, ()
    )


class Consumer(CommitSafeConsumer):
    """Only the raw-batch bookkeeping; each fetch returns the next of ``fetches``."""

    fetches: list[dict[TP, list[Any]]]

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109
        return self.fetches.pop(0), None


def consumer(batch_size: int = 1000, committed: int | None = None) -> Consumer:
    c = object.__new__(Consumer)
    c.app = SimpleNamespace(
        consumer_generation_id=1,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: topic in (SHARED, OTHER)),
    )
    c.raw_topics = frozenset({EVENTS, SHARED})
    c.raw_batch_size = batch_size
    c.flow_active = True
    c.scheduler = DefaultSchedulingStrategy()
    c._stopped = asyncio.Event()
    c._crashed = asyncio.Event()
    c._committed_offset = defaultdict(lambda: committed)
    c._acked = defaultdict(list)
    c._acked_index = defaultdict(set)
    c._gap = defaultdict(IntervalTree)
    c._read_offset = defaultdict(lambda: None)
    c._buffered_partitions = set()
    c._unacked_messages = set()
    c._n_acked = 0
    c._raw_queue = asyncio.Queue()  # unbounded: fetch() runs before anything drains it
    c._to_message = lambda tp, r: _message(c, tp, r)
    return c


def _message(c: Consumer, tp: TP, r: ConsumerRecord[bytes, bytes]) -> Any:
    from faust.types.tuples import ConsumerMessage

    return ConsumerMessage(
        r.topic, r.partition, r.offset, 0.0, 0, [], r.key, r.value, None, 1, 1, tp, generation_id=1
    )


async def fetch(c: Consumer, records: dict[TP, list[Any]]) -> list[tuple[TP, Any]]:
    """One getmany: what Faust's streams get; the raw batches are queued."""
    c.fetches = [records]
    return [item async for item in c.getmany(timeout=0)]


def queued(c: Consumer) -> list[RawBatch]:
    queue = c._queue()
    return [queue.get_nowait() for _ in range(queue.qsize())]


def acked(c: Consumer, tp: TP) -> list[int]:
    return sorted(c._acked[tp])


async def test_records_are_cut_into_batches_and_acked_only_once_the_router_is_done() -> None:
    c = consumer(batch_size=1000)
    fetched = {P0: [record(P0, i) for i in range(700)], P1: [record(P1, i) for i in range(800)]}
    assert await fetch(c, fetched) == []  # nothing for Faust's streams
    batches = queued(c)
    assert [len(b.records) for b in batches] == [700, 800]
    for batch in batches:
        c._queue().put_nowait(batch)

    stream = c.raw_batches()
    first = await anext(stream)
    assert first.records == fetched[P0]
    assert acked(c, P0) == []  # the router has not finished it
    second = await anext(stream)  # the first is done
    assert acked(c, P0) == list(range(700))
    assert second.offsets == {P1: list(range(800))}
    assert c._new_offset(P0) == 700  # Faust's commit offset follows
    await stream.aclose()
    assert acked(c, P1) == []  # the router never finished the second batch


async def test_a_partition_larger_than_a_batch_is_split_in_order() -> None:
    c = consumer(batch_size=300)
    await fetch(c, {P0: [record(P0, i) for i in range(700)]})
    assert [b.offsets[P0][0] for b in queued(c)] == [0, 300, 600]


async def test_a_failed_batch_is_not_acked() -> None:
    c = consumer()
    await fetch(c, {P0: [record(P0, i) for i in range(10)]})

    async def route() -> None:
        async with contextlib.aclosing(c.raw_batches()) as batches:  # as the router does
            async for _batch in batches:
                raise RuntimeError("router failed")

    with pytest.raises(RuntimeError):
        await route()
    assert acked(c, P0) == []
    assert c._idle().is_set()  # a revocation waiting for the batch is not stuck


async def test_a_batch_of_an_earlier_generation_is_neither_routed_nor_acked() -> None:
    c = consumer()
    await fetch(c, {P0: [record(P0, i) for i in range(10)]})
    await fetch(c, {P1: [record(P1, i) for i in range(5)]})
    stream = c.raw_batches()
    first = await anext(stream)
    c.app.consumer_generation_id = 2  # a rebalance while the router works on it
    assert first.offsets == {P0: list(range(10))}
    next_batch = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    assert not next_batch.done()  # the queued P1 batch (generation 1) was dropped
    next_batch.cancel()
    assert acked(c, P0) == [] and acked(c, P1) == []


async def test_a_gap_in_the_offsets_does_not_stop_commits() -> None:
    c = consumer(committed=0)
    c._read_offset[P0] = 0
    await fetch(c, {P0: [record(P0, o) for o in (0, 1, 2, 5, 6)]})  # 3, 4: a marker, say
    stream = c.raw_batches()
    await anext(stream)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(anext(stream), 0.01)
    assert c._new_offset(P0) == 7


async def test_a_topic_faust_streams_read_too_is_acked_once_both_are_done() -> None:
    c = consumer()
    given = await fetch(c, {S0: [record(S0, i) for i in range(3)], O0: [record(O0, 0)]})
    assert [(tp, m.offset) for tp, m in given] == [(S0, 0), (O0, 0), (S0, 1), (S0, 2)]
    (batch,) = queued(c)
    assert batch.offsets == {S0: [0, 1, 2]}  # the other topic is not the router's
    messages = {m.offset: m for tp, m in given if tp == S0}
    c.ack(messages[0])  # Faust's streams finish offset 0 first
    assert acked(c, S0) == []
    c._queue().put_nowait(batch)
    stream: AsyncIterator[RawBatch] = c.raw_batches()
    await anext(stream)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(anext(stream), 0.01)  # the router is done with 0, 1, 2
    assert acked(c, S0) == [0]
    c.ack(messages[2])
    assert acked(c, S0) == [0, 2]
    assert c._new_offset(S0) == 1  # 1 still waits for Faust's streams
    c.ack(messages[1])
    assert c._new_offset(S0) == 3
