"""Read topics over a time range, partitions merged in timestamp order (the only Kafka I/O here).

No consumer group is joined and nothing is committed: partitions are assigned explicitly from
the offsets of ``--since`` (offsets-for-times) to end offsets fixed when the read starts, so a
replay of a live topic ends, and two replays of the same range read the same records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final, NamedTuple

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


# A record as the merge holds it and ``RangeReader.batches`` hands it out: RawRecord's fields in
# a plain tuple. The garbage collector stops tracking a plain tuple of plain values the first
# time it sees one, never a named tuple: buffered by the thousands, named tuples were promoted to
# the oldest generation and brought on full collections (a sixth of a replay's CPU).
RecordFields = tuple[int, str, int, int, bytes | None, bytes | None, Headers]
# Positions of the fields a pipeline reads from RecordFields.
TOPIC: Final = 1
KEY: Final = 4
VALUE: Final = 5

# RawRecord(...) runs the named tuple's __new__, a Python function; tuple.__new__ is the same
# construction without the interpreted frame (it matters at a record per call).
_new_record: Callable[[type[RawRecord], tuple[Any, ...]], RawRecord] = tuple.__new__


def raw_record(fields: RecordFields) -> RawRecord:
    """The RawRecord of a record's fields (as ``RangeReader.batches`` gives them)."""
    return _new_record(RawRecord, fields)


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


_Merge = BoundedMerge[Coordinates, RecordFields]


class _Columns(NamedTuple):
    """One partition's records of a fetched batch, field by field."""

    stamps: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[Headers]  # empty when headers are not read

    def appends(
        self,
    ) -> tuple[
        Callable[[int], None],
        Callable[[int], None],
        Callable[[bytes | None], None],
        Callable[[bytes | None], None],
        Callable[[Headers], None],
    ]:
        """Each column's ``append``, bound once per run of a partition's messages."""
        return (
            self.stamps.append,
            self.offsets.append,
            self.keys.append,
            self.values.append,
            self.headers.append,
        )


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
        new_record = _new_record
        for batch in self.batches(progress):
            for fields in batch:
                yield new_record(RawRecord, fields)

    def batches(
        self, progress: Callable[[int], None] | None = None
    ) -> Iterator[list[RecordFields]]:
        """``records`` a list at a time, each record as its fields in a plain tuple (index them
        with TOPIC, KEY, VALUE, or make it a RawRecord with ``raw_record``): what the merge can
        emit after each fetched batch, never empty. The cheapest way to read a range: no
        generator step and no object per record."""
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
        # consume() returns once it has num_messages or its timeout passed: near the end of a
        # bounded read, asking for a full batch left the last call idle for the whole timeout
        # (0.2 s of every replay). Ask for no more than the offsets left to read.
        left = None if self._follow else self.total
        while not merge.done:
            wanted = CONSUME_BATCH if left is None else max(1, min(CONSUME_BATCH, left - consumed))
            messages = consumer.consume(num_messages=wanted, timeout=0.2)
            fetched = bool(messages)
            columns, taken = self._take(messages, merge, ends)
            consumed += taken
            # The Message objects go before the records are made: alive while tuples are
            # allocated, they would survive collector passes into the oldest generation.
            del messages
            for source, (stamps, offsets, keys, values, headers) in columns.items():
                topic, partition = source
                merge.extend(
                    source,
                    list(
                        zip(
                            stamps,
                            repeat(topic),
                            repeat(partition),
                            offsets,
                            keys,
                            values,
                            headers or repeat(()),
                        )
                    ),
                )
            self._finish_passed_ends(consumer, merge, ends)
            ready = merge.pop_ready()
            if ready:
                yield ready
            self._apply_backpressure(consumer, merge, paused)
            if progress is not None and (fetched or ready):
                progress(consumed)

    def _take(
        self, messages: list[Message], merge: _Merge, ends: dict[Coordinates, int | None]
    ) -> tuple[dict[Coordinates, _Columns], int]:
        """The fields of ``messages`` in range, in columns per partition (timestamps, offsets,
        keys, values, and headers if read); and how many offsets of the spans they consumed.
        Partitions that reach their end offset are finished in ``merge``."""
        # The hottest loop of a replay: plain locals and appends, nothing allocated per record.
        # A batch holds runs of one partition's messages: what depends on the partition is
        # looked up once per run.
        live = merge.live_sources  # a live view: finished sources leave it
        headers_of, with_headers = _headers, self._with_headers
        since = self._range.since_ms if self._range.since_ms is not None else -(2**63)
        until = self._range.until_ms if self._range.until_ms is not None else 2**63
        columns: dict[Coordinates, _Columns] = {}
        consumed = 0
        topic: str | None = None
        partition: int | None = -1
        coordinates: Coordinates = ("", -1)
        skip = True
        end: int | None = None
        column = _Columns([], [], [], [], [])
        add_stamp, add_offset, add_key, add_value, add_headers = column.appends()
        for message in messages:
            if message.partition() != partition or message.topic() != topic:
                topic, partition = message.topic(), message.partition()
                coordinates = (topic or "", partition or 0)
                skip = coordinates not in live  # not ours, or already at its end
                if not skip:
                    end = ends[coordinates]
                    column = columns.get(coordinates) or columns.setdefault(
                        coordinates, _Columns([], [], [], [], [])
                    )
                    add_stamp, add_offset, add_key, add_value, add_headers = column.appends()
            if skip:
                continue
            error = message.error()
            if error is not None:
                self._on_error(merge, coordinates, error)
                skip = coordinates not in live
                continue
            offset = message.offset() or 0
            if end is not None and offset >= end:
                merge.finish(coordinates)
                skip = True
                continue
            consumed += 1
            timestamp_ms = message.timestamp()[1]
            if since <= timestamp_ms < until:
                add_stamp(timestamp_ms)
                add_offset(offset)
                add_key(message.key())
                add_value(message.value())
                if with_headers:
                    add_headers(headers_of(message))
            if end is not None and offset + 1 >= end:
                merge.finish(coordinates)
                skip = True
        return columns, consumed

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
