"""Read topics over a time range, partitions merged in timestamp order (the only Kafka I/O here).

No consumer group is joined and nothing is committed: partitions are assigned explicitly from
the offsets of ``--since`` (offsets-for-times) to end offsets fixed when the read starts, so a
replay of a live topic ends, and two replays of the same range read the same records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from plumbing.kafka.clients import consumer_config
from plumbing.settings import Settings
from streams.audit.merge import BoundedMerge
from streams.audit.timerange import TimeRange

Coordinates = tuple[str, int]
Headers = tuple[tuple[str, bytes | None], ...]


class ReplayError(RuntimeError):
    """The replay could not read its topics (missing topic, broker error)."""


class RawRecord(NamedTuple):
    """One Kafka record with its coordinates, before decoding.

    The fields start with the replay order (timestamp, then topic, partition and offset, so
    ties break the same way every time): records compare in that order as plain tuples, which
    the merge sorts in C without a key function. A named tuple rather than a frozen dataclass:
    one is made for every record read, and a tuple is built several times faster.
    """

    timestamp_ms: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


# RawRecord(...) runs the named tuple's __new__, a Python function; tuple.__new__ is the same
# construction without the interpreted frame (it matters at a record per call).
_new_record: Callable[[type[RawRecord], tuple[Any, ...]], RawRecord] = tuple.__new__


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """Offsets ``start <= o < end`` of one partition; ``end`` None reads on (follow mode)."""

    topic: str
    partition: int
    start: int
    end: int | None

    @property
    def size(self) -> int:
        return 0 if self.end is None else max(0, self.end - self.start)

    @property
    def empty(self) -> bool:
        return self.end is not None and self.end <= self.start


_Merge = BoundedMerge[Coordinates, RawRecord]


def _headers(message: Message) -> Headers:
    headers = message.headers()
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


# Consumer settings of every range read (the bench's bare read uses them too, to be comparable).
READ_CONFIG: dict[str, Any] = {
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 100,
    # Bounds librdkafka's prefetch (all partitions together), so memory stays constant.
    "queued.max.messages.kbytes": 8192,
    # What one fetch brings per partition: kept well under what the merge buffers per partition
    # (see RangeReader), so interleaved partitions never need pausing (a pause drops the
    # partition's prefetched records, which are fetched again on resume).
    "max.partition.fetch.bytes": 65536,
}
CONSUME_BATCH = 2000  # messages per consume() call


class RangeReader:
    """Records of ``topics`` within ``time_range``, merged across partitions by timestamp.

    ``open()`` fixes the spans (so ``total`` is known for a progress bar); iterating reads them.
    ``headers=False`` leaves every record's headers empty (event replays never look at them).
    ``progress(consumed_offsets)`` is called after each batch that brought records or emitted
    some (so a caller can flush its output there).
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        time_range: TimeRange,
        *,
        follow: bool = False,
        headers: bool = True,
        buffer_per_partition: int = 5000,
        timeout: float = 30.0,
    ) -> None:
        if follow and time_range.until_ms is not None:
            raise ValueError("follow reads on past the end; it cannot be combined with until")
        self._settings = settings
        self._topics = list(topics)
        self._range = time_range
        self._follow = follow
        self._with_headers = headers
        self._capacity = buffer_per_partition
        self._timeout = timeout
        self._consumer: Consumer | None = None
        self.spans: list[PartitionSpan] = []

    # -- planning ----------------------------------------------------------------------------

    def open(self) -> RangeReader:
        """Connect and fix each partition's span (start from --since, end from --until/now)."""
        if self._consumer is not None:
            return self
        consumer = Consumer(
            consumer_config(
                self._settings,
                f"replay-{uuid.uuid4().hex}",  # librdkafka requires one; never joined (assign)
                **READ_CONFIG,
            )
        )
        self._consumer = consumer
        try:
            self.spans = self._plan(consumer)
        except BaseException:
            self.close()
            raise
        return self

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            # Metadata of this topic only: a shared cluster may hold thousands of topics, and
            # fetching them all took longer than replaying 10 000 records.
            meta = consumer.list_topics(topic, timeout=self._timeout).topics.get(topic)
            if meta is None or meta.error is not None:
                reason = meta.error.str() if meta is not None and meta.error else "does not exist"
                raise ReplayError(f"topic {topic}: {reason}")
            partitions.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
        return partitions

    def _offsets_at(
        self, consumer: Consumer, partitions: list[TopicPartition], ms: int
    ) -> list[int]:
        query = [TopicPartition(tp.topic, tp.partition, ms) for tp in partitions]
        answer = consumer.offsets_for_times(query, timeout=self._timeout)
        by_coordinates = {(tp.topic, tp.partition): tp for tp in answer}
        offsets: list[int] = []
        for tp in partitions:
            found = by_coordinates[(tp.topic, tp.partition)]
            if found.error is not None:
                raise ReplayError(f"offsets for time of {tp.topic}/{tp.partition}: {found.error}")
            offsets.append(found.offset)
        return offsets

    def _plan(self, consumer: Consumer) -> list[PartitionSpan]:
        partitions = self._partitions(consumer)
        watermarks = []
        for tp in partitions:
            marks = consumer.get_watermark_offsets(tp, timeout=self._timeout)
            if marks is None:
                raise ReplayError(f"no watermarks for {tp.topic}/{tp.partition} (timeout)")
            watermarks.append(marks)
        starts = [low for low, _ in watermarks]
        if self._range.since_ms is not None:
            found = self._offsets_at(consumer, partitions, self._range.since_ms)
            # -1: no record at or after `since` yet; start at the end (nothing in range).
            starts = [
                high if o < 0 else max(o, low)
                for o, (low, high) in zip(found, watermarks, strict=True)
            ]
        ends: list[int | None] = [None if self._follow else high for _, high in watermarks]
        if self._range.until_ms is not None:
            found = self._offsets_at(consumer, partitions, self._range.until_ms)
            ends = [
                high if o < 0 else min(o, high)
                for o, (_, high) in zip(found, watermarks, strict=True)
            ]
        return [
            PartitionSpan(tp.topic, tp.partition, start, end)
            for tp, start, end in zip(partitions, starts, ends, strict=True)
        ]

    @property
    def total(self) -> int:
        """How many offsets the spans cover (records plus any transaction markers)."""
        return sum(span.size for span in self.spans)

    # -- reading -----------------------------------------------------------------------------

    def records(self, progress: Callable[[int], None] | None = None) -> Iterator[RawRecord]:
        """The records of the range in (timestamp, topic, partition, offset) order.

        Each call reads the same spans again from their start.
        """
        consumer = self.open()._consumer
        assert consumer is not None
        ends = {(s.topic, s.partition): s.end for s in self.spans if not s.empty}
        merge: _Merge = BoundedMerge(ends, None, self._capacity)
        if not ends:
            return
        assignment = [
            TopicPartition(s.topic, s.partition, s.start) for s in self.spans if not s.empty
        ]
        consumer.assign(assignment)
        # librdkafka keeps a partition's pause state across assignments (a second pass over the
        # same spans, e.g. count then redeliver, would otherwise stall on them).
        consumer.resume(assignment)
        paused: set[Coordinates] = set()
        consumed = 0
        since = self._range.since_ms if self._range.since_ms is not None else -(2**63)
        until = self._range.until_ms if self._range.until_ms is not None else 2**63
        live = merge.live_sources  # a live view: finished sources leave it
        new_record, headers_of = _new_record, _headers
        with_headers = self._with_headers
        while not merge.done:
            messages = consumer.consume(num_messages=CONSUME_BATCH, timeout=0.2)
            # This batch's records per partition, handed to the merge once per partition.
            fetched: dict[Coordinates, list[RawRecord]] = {}
            # The hottest loop of a replay: plain locals, one tuple per record.
            for message in messages:
                coordinates = (message.topic() or "", message.partition() or 0)
                if coordinates not in live:
                    continue  # not ours, or already at its end
                error = message.error()
                if error is not None:
                    self._on_error(merge, coordinates, error)
                    continue
                offset = message.offset() or 0
                end = ends[coordinates]
                if end is not None and offset >= end:
                    merge.finish(coordinates)
                    continue
                consumed += 1
                timestamp_ms = message.timestamp()[1]
                if since <= timestamp_ms < until:
                    records = fetched.get(coordinates)
                    if records is None:
                        records = fetched[coordinates] = []
                    records.append(
                        new_record(
                            RawRecord,
                            (
                                timestamp_ms,
                                coordinates[0],
                                coordinates[1],
                                offset,
                                message.key(),
                                message.value(),
                                headers_of(message) if with_headers else (),
                            ),
                        )
                    )
                if end is not None and offset + 1 >= end:
                    merge.finish(coordinates)
            for coordinates, records in fetched.items():
                merge.extend(coordinates, records)
            self._finish_passed_ends(consumer, merge, ends)
            ready = merge.pop_ready()
            yield from ready
            self._apply_backpressure(consumer, merge, paused)
            if progress is not None and (messages or ready):
                progress(consumed)

    def _on_error(self, merge: _Merge, coordinates: Coordinates, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            # At the log end (the last stable offset under read_committed): nothing more is
            # in range now; a follow read keeps the partition but stops waiting for it.
            if self._follow:
                merge.set_idle(coordinates)
            else:
                merge.finish(coordinates)
        elif not error.retriable():
            raise ReplayError(f"{coordinates[0]}/{coordinates[1]}: {error.str()}")

    def _finish_passed_ends(
        self,
        consumer: Consumer,
        merge: _Merge,
        ends: dict[Coordinates, int | None],
    ) -> None:
        # Records we never see (transaction markers, aborted records) still move the position.
        waiting = [tp for tp in merge.starving if ends[tp] is not None]
        if not waiting:
            return
        for tp in consumer.position([TopicPartition(t, p) for t, p in waiting]):
            end = ends[(tp.topic, tp.partition)]
            if end is not None and tp.offset >= end:
                merge.finish((tp.topic, tp.partition))

    def _apply_backpressure(
        self, consumer: Consumer, merge: _Merge, paused: set[Coordinates]
    ) -> None:
        full = {c for c in merge.live if merge.is_full(c)}
        to_pause, to_resume = full - paused, paused - full
        try:
            if to_pause:
                consumer.pause([TopicPartition(t, p) for t, p in to_pause])
            if to_resume:
                consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        except KafkaException as exc:
            raise ReplayError(f"pause/resume failed: {exc}") from None
        paused -= to_resume
        paused |= to_pause

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> RangeReader:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()
