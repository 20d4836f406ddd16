"""The pure parts of the one produce path: back-pressure on a full queue, header normalisation,
batch acknowledgement (sync and asyncio forms). A tiny fake producer stands in for librdkafka:
``produce`` queues the delivery report, ``poll``/``flush`` serve the queued reports."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from plumbing.kafka.deadletter import dead_letter_headers, redrive_record
from plumbing.kafka.produce import (
    AsyncBatchAck,
    BatchAck,
    Delivered,
    PublishError,
    PublishTimeout,
    Record,
    message_headers,
    produce,
    produce_async,
    record_of,
)


class FakeMessage:
    """The Message methods the produce path reads."""

    def __init__(
        self,
        topic: str = "t",
        partition: int = 0,
        offset: int = 0,
        key: bytes | None = b"k",
        value: bytes | None = b"v",
        headers: Any = None,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, 1234


def msg(**kwargs: Any) -> Message:
    return cast(Message, FakeMessage(**kwargs))


class FakeProducer:
    """Raises BufferError on the first ``full`` produce calls; fails the records whose topic is
    in ``refuse`` with a delivery error, and the records whose topic is in ``reject`` at once
    (as librdkafka does for, e.g., an unknown topic)."""

    def __init__(
        self,
        full: int = 0,
        refuse: frozenset[str] = frozenset(),
        reject: frozenset[str] = frozenset(),
    ) -> None:
        self.full = full
        self.refuse = refuse
        self.reject = reject
        self.produced: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.polls = 0
        self.queue: list[tuple[Callable[..., Any], KafkaError | None, Message]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        if topic in self.reject:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
        offset = len(self.produced)
        self.produced.append((topic, kwargs["key"], kwargs["value"], kwargs["headers"]))
        err = KafkaError(KafkaError._MSG_TIMED_OUT) if topic in self.refuse else None
        self.queue.append((kwargs["on_delivery"], err, msg(topic=topic, offset=offset)))

    def poll(self, _timeout: float = 0) -> int:
        self.polls += 1
        served, self.queue = self.queue, []
        for callback, err, message in served:
            callback(err, message)
        return len(served)

    def flush(self, _timeout: float = 0) -> int:
        self.poll()
        return 0


def fake(producer: FakeProducer) -> Producer:
    return cast(Producer, producer)


# -- back-pressure -----------------------------------------------------------------------------


def test_produce_serves_reports_until_there_is_room() -> None:
    producer = FakeProducer(full=3)
    reports: list[KafkaError | None] = []
    produce(fake(producer), Record("t", b"k", b"v"), lambda err, _m: reports.append(err))
    assert producer.produced == [("t", b"k", b"v", None)]
    assert producer.polls == 3  # one wait for room per BufferError, then the record went out
    assert producer.full == 0


def test_produce_passes_headers_and_propagates_kafka_errors() -> None:
    producer = FakeProducer(reject=frozenset({"nope"}))
    produce(fake(producer), Record("t", None, b"v", (("a", b"1"),)), None)
    assert producer.produced == [("t", None, b"v", [("a", b"1")])]
    with pytest.raises(KafkaException):
        produce(fake(producer), Record("nope", None, b"v"), None)


async def test_produce_async_yields_to_the_loop_while_the_queue_is_full() -> None:
    producer = FakeProducer(full=4)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while producer.full:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await produce_async(fake(producer), Record("t", b"k", b"v"), None)
    await other
    assert len(producer.produced) == 1
    assert producer.polls == 0  # the loop never polls: another thread owns that
    assert ticks > 0


# -- header normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, []),
        ([], []),
        ({"a": b"1", "b": "two", "c": None}, [("a", b"1"), ("b", b"two"), ("c", b"")]),
        ([("a", b"1"), ("a", "2"), ("n", None)], [("a", b"1"), ("a", b"2"), ("n", b"")]),
    ],
)
def test_message_headers_normalises_to_bytes_pairs(
    headers: Any, expected: list[tuple[str, bytes]]
) -> None:
    assert message_headers(msg(headers=headers)) == expected


def test_record_of_and_redrive_record_are_records() -> None:
    message = msg(topic="src", key=b"k", value=b"v", headers=[("x", "y")])
    assert record_of(message) == Record("src", b"k", b"v", [("x", b"y")])
    parked = dead_letter_headers(message, "boom", "test", 99, {"webhook-id": "wh"})
    assert parked[0] == ("x", b"y")
    redriven = redrive_record(b"k", b"v", [*parked, ("retry-attempt", b"3")])
    assert isinstance(redriven, Record)
    assert redriven == Record("src", b"k", b"v", [("x", b"y")])


def test_dead_letter_headers_drop_earlier_dead_letter_headers() -> None:
    message = msg(headers={"dlt-reason": "old", "keep": None})
    headers = dict(dead_letter_headers(message, "new", "test", 1))
    assert headers["keep"] == b""
    assert headers["dlt-reason"] == b"new"


# -- batch acknowledgement, sync ---------------------------------------------------------------


def records(*topics: str) -> list[Record]:
    return [Record(topic, b"k", b"v") for topic in topics]


def test_batch_all_acknowledged() -> None:
    producer = FakeProducer(full=2)
    ack = BatchAck("events")
    ack.send_all(fake(producer), records("a", "b", "c"))
    assert ack.wait(fake(producer), 1.0) == 3
    assert (ack.produced, ack.acked, ack.failed) == (3, 3, 0)


def test_batch_one_refused_names_the_first_failure_and_the_count() -> None:
    producer = FakeProducer(refuse=frozenset({"bad", "worse"}))
    ack = BatchAck("events")
    for record in records("a", "bad", "b", "worse"):
        ack.send(fake(producer), record)
    with pytest.raises(PublishError, match=r"^2 events failed: bad: ") as raised:
        ack.wait(fake(producer), 1.0)
    assert not isinstance(raised.value, TimeoutError)
    assert (ack.acked, ack.failed) == (2, 2)


def test_batch_not_acknowledged_in_time_is_a_timeout() -> None:
    producer = FakeProducer()
    producer.flush = lambda _timeout=0: 2  # type: ignore[method-assign]
    ack = BatchAck("records")
    ack.send_all(fake(producer), records("a", "b"))
    with pytest.raises(PublishTimeout, match=r"2 records not acknowledged within 0\.5s") as raised:
        ack.wait(fake(producer), 0.5)
    assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, PublishError)


def test_batch_refused_before_all_produced_counts_what_went_out() -> None:
    producer = FakeProducer(reject=frozenset({"nope"}))
    ack = BatchAck()
    with pytest.raises(KafkaException):
        ack.send_all(fake(producer), records("a", "b", "nope", "c"))
    assert ack.produced == 2
    assert ack.wait(fake(producer), 1.0) == 2


# -- batch acknowledgement, asyncio ------------------------------------------------------------


async def test_async_batch_all_acknowledged_from_another_thread() -> None:
    producer = FakeProducer()
    ack = AsyncBatchAck(asyncio.get_running_loop())
    future = asyncio.ensure_future(ack.send_all_async(fake(producer), records("a", "b", "c")))
    await asyncio.sleep(0)  # produced and sealed, nothing reported yet
    assert not future.done()
    poller = threading.Thread(target=producer.poll)
    poller.start()
    poller.join()
    assert await future == [Delivered("a", 0, 0), Delivered("b", 0, 1), Delivered("c", 0, 2)]


async def test_async_batch_waits_for_room_made_by_the_poll_thread() -> None:
    producer = FakeProducer(full=3)
    stop = threading.Event()

    def poll() -> None:  # as AsyncProducer's poll thread
        while not stop.is_set():
            producer.poll()
            stop.wait(0.001)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        ack = AsyncBatchAck(asyncio.get_running_loop())
        delivered = await asyncio.wait_for(ack.send_all_async(fake(producer), records("a", "b")), 5)
    finally:
        stop.set()
        poller.join()
    assert [d.topic for d in delivered] == ["a", "b"]
    assert producer.full == 0


async def test_async_batch_reports_before_the_seal_complete_on_the_seal() -> None:
    producer = FakeProducer()
    ack = AsyncBatchAck(asyncio.get_running_loop())
    produce(fake(producer), Record("a", None, None), ack.on_delivery)
    producer.poll()  # every report arrived before the batch was sealed
    assert await ack.seal(1) == [Delivered("a", 0, 0)]


async def test_async_batch_one_refused() -> None:
    producer = FakeProducer(refuse=frozenset({"bad"}))
    ack = AsyncBatchAck(asyncio.get_running_loop(), "events")
    future = asyncio.ensure_future(ack.send_all_async(fake(producer), records("a", "bad", "b")))
    await asyncio.sleep(0)
    await asyncio.to_thread(producer.poll)
    with pytest.raises(PublishError, match=r"^1 events failed: bad: "):
        await future
    assert ack.acked == 2


async def test_async_batch_refused_before_all_produced() -> None:
    producer = FakeProducer(reject=frozenset({"nope"}))
    ack = AsyncBatchAck(asyncio.get_running_loop())
    future = asyncio.ensure_future(
        ack.send_all_async(fake(producer), records("a", "nope", "b", "c"))
    )
    await asyncio.sleep(0)  # "a" produced, "nope" refused, so "b" and "c" never were
    assert [p[0] for p in producer.produced] == ["a"]
    assert not future.done()  # "a" is not reported yet
    await asyncio.to_thread(producer.poll)
    with pytest.raises(PublishError, match=r"^3 records failed: nope: "):
        await future
    assert (ack.produced, ack.acked, ack.failed) == (1, 1, 3)


async def test_async_empty_batch_completes_at_once() -> None:
    ack = AsyncBatchAck(asyncio.get_running_loop())
    assert await ack.send_all_async(fake(FakeProducer()), []) == []
