"""Decode and filter raw records into audit entries; undecodable records are reported, skipped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from plumbing.kafka.deadletter import DeadLetter, header_map, parse_dead_letter
from schemas.delivery_records import DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.serde import HEADER_SIZE, DecodeError, Serde
from schemas.transcode import EventJson, framed_event_json
from streams.audit.filters import RecordFilter
from streams.audit.reader import KEY, TOPIC, VALUE, RawRecord, RecordFields, raw_record

# on_undecodable(record, reason): called for every record that is skipped because it cannot be
# decoded; the run goes on.
OnUndecodable = Callable[[RawRecord, str], None]


@dataclass
class ReplayStats:
    """Counts for the summary line."""

    read: int = 0
    matched: int = 0
    undecodable: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One record of the deliveries dead-letter topic: why it was parked, and the task.

    ``task`` is None when the parked value itself cannot be decoded; ``task_error`` says why.
    """

    dead_letter: DeadLetter
    failed_at_ms: int | None
    task: DeliveryTask | None
    task_error: str | None = None


E = TypeVar("E")


def _select(
    records: Iterable[RawRecord],
    decode: Callable[[bytes | None, str], E],
    keep: RecordFilter,
    matches: Callable[[E], bool] | None,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[tuple[RawRecord, E]]:
    key_may_match = keep.key_may_match
    # Counted in locals (this loop runs for every record) and added to ``stats`` as we go out.
    read = matched = 0
    try:
        for record in records:
            read += 1
            # The key is the tenant id: records of other tenants are skipped without decoding.
            if not key_may_match(record.key):
                continue
            try:
                event = decode(record.value, record.topic)
            except DecodeError as exc:
                stats.undecodable += 1
                on_undecodable(record, exc.reason)
                continue
            if matches is None or matches(event):
                matched += 1
                yield record, event
    finally:
        stats.read += read
        stats.matched += matched


def select_events(
    records: Iterable[RawRecord],
    serde: Serde,
    keep: RecordFilter,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[tuple[RawRecord, Event]]:
    """The events among ``records`` that ``keep`` matches, in input order."""
    matches = None if keep.matches_every_event else keep.matches
    return _select(records, serde.events.decode, keep, matches, on_undecodable, stats)


def select_event_json(
    records: Iterable[RawRecord],
    serde: Serde,
    keep: RecordFilter,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[tuple[RawRecord, EventJson]]:
    """``select_events`` for JSON output: each event in its JSON form, transcoded straight from
    the Avro bytes where the record allows (several times cheaper than building the Event)."""
    matches = None if keep.matches_every_event else keep.matches_json
    return _select(records, serde.event_json, keep, matches, on_undecodable, stats)


def event_json_lines(
    batches: Iterable[list[RecordFields]],
    serde: Serde,
    keep: RecordFilter,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[list[bytes]]:
    """``select_event_json`` a batch at a time, for output as JSON lines: for each batch of
    records, the JSON of its events that ``keep`` matches, in order (possibly none).

    One loop per batch with no generator, call or tuple per record beyond the transcoding:
    printing a replay costs little more than reading it."""
    tenant_keys = keep.tenant_keys
    matches = None if keep.matches_every_event else keep.matches_json
    fast, full, ours = framed_event_json, serde.event_json, serde.events.written_with_our_schema
    # Wire headers seen written with exactly our Event schema: their records go straight to the
    # transcoder. A schema id never changes its schema, so a header once ours stays ours.
    own_headers: set[bytes] = set()
    for batch in batches:
        lines: list[bytes] = []
        append = lines.append
        for record in batch:
            # The key is the tenant id: records of other tenants are skipped without decoding.
            if tenant_keys and record[KEY] not in tenant_keys:
                continue
            value = record[VALUE]
            event = fast(value, own_headers)
            if event is None:
                try:
                    event = full(value, record[TOPIC])
                except DecodeError as exc:
                    stats.undecodable += 1
                    on_undecodable(raw_record(record), exc.reason)
                    continue
                if value and ours(value):
                    own_headers.add(value[:HEADER_SIZE])
            if matches is None or matches(event):
                append(event.json)
        stats.read += len(batch)
        stats.matched += len(lines)
        yield lines


def select_deliveries(
    records: Iterable[RawRecord],
    serde: Serde,
    keep: RecordFilter,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[tuple[RawRecord, WebhookDelivery]]:
    """The attempt records among ``records`` that ``keep`` matches (tombstones are skipped)."""
    decode = serde.deliveries.decode
    for record in records:
        stats.read += 1
        if record.value is None:
            continue  # a compaction tombstone: nothing to audit
        try:
            delivery = decode(record.value, record.topic)
        except DecodeError as exc:
            stats.undecodable += 1
            on_undecodable(record, exc.reason)
            continue
        if keep.matches_delivery(delivery):
            stats.matched += 1
            yield record, delivery


def decode_dead_letter(record: RawRecord, serde: Serde) -> DeadLetterEntry:
    """The dead letter in ``record``; DecodeError if its headers are not the DLT convention."""
    try:
        dead_letter = parse_dead_letter(record.headers)
    except ValueError as exc:
        raise DecodeError(f"dead-letter headers are malformed: {exc}") from None
    if not dead_letter.reason and not dead_letter.original_topic:
        raise DecodeError("no dead-letter headers (dlt-reason, dlt-original-topic)")
    failed_at = header_map(record.headers).get("dlt-failed-at", "")
    entry_failed_at = int(failed_at) if failed_at.isdigit() else None
    try:
        task = serde.tasks.decode(record.value, dead_letter.original_topic or record.topic)
    except DecodeError as exc:
        # The parked value may be exactly what could not be decoded: still worth listing.
        return DeadLetterEntry(dead_letter, entry_failed_at, None, exc.reason)
    return DeadLetterEntry(dead_letter, entry_failed_at, task)


def select_dead_letters(
    records: Iterable[RawRecord],
    serde: Serde,
    keep: RecordFilter,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[tuple[RawRecord, DeadLetterEntry]]:
    """The dead letters among ``records`` whose task ``keep`` matches.

    A dead letter whose task cannot be decoded is kept only when no filter is given (there is
    nothing to match it against).
    """
    unfiltered = keep == RecordFilter()
    for record in records:
        stats.read += 1
        try:
            entry = decode_dead_letter(record, serde)
        except DecodeError as exc:
            stats.undecodable += 1
            on_undecodable(record, exc.reason)
            continue
        if (entry.task is None and unfiltered) or (
            entry.task is not None and keep.matches_task(entry.task)
        ):
            stats.matched += 1
            yield record, entry
