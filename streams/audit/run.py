"""What a replay reads and how its records become audit entries (wiring reader and pipeline)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from plumbing.settings import Settings
from schemas.serde import Serde
from streams.audit.filters import RecordFilter
from streams.audit.pipeline import (
    OnUndecodable,
    ReplayStats,
    event_json_lines,
    select_dead_letters,
    select_deliveries,
    select_event_json,
    select_events,
)
from streams.audit.reader import RawRecord, RecordFields, raw_record
from streams.audit.render import Entry, json_line
from streams.audit.timerange import TimeRange


class AuditTopic(StrEnum):
    """What to replay: the event topics, the attempt log, or the deliveries dead letters."""

    EVENTS = "events"
    DELIVERIES = "deliveries"
    DLT = "dlt"


@dataclass(frozen=True)
class ReplayRequest:
    """One replay: which topic family, which window, which records."""

    topic: AuditTopic = AuditTopic.EVENTS
    time_range: TimeRange = field(default_factory=TimeRange)
    selection: RecordFilter = field(default_factory=RecordFilter)
    subsystems: tuple[str, ...] = ()

    @property
    def reads_headers(self) -> bool:
        """Whether the records' headers matter (only dead letters keep their story there)."""
        return self.topic is AuditTopic.DLT

    def topics(self, settings: Settings) -> list[str]:
        """The Kafka topics to read (event topics only of subsystems that can match)."""
        names = settings.topics
        if self.topic is AuditTopic.DELIVERIES:
            return [names.webhook_deliveries]
        if self.topic is AuditTopic.DLT:
            return [names.deliveries_dlt]
        return [names.events(s) for s in self.selection.subsystems(self.subsystems)]


def entries(
    request: ReplayRequest,
    records: Iterable[RawRecord],
    serde: Serde,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
    *,
    events_as_json: bool = False,
) -> Iterator[tuple[RawRecord, Entry]]:
    """The matching entries of ``records``, decoded as ``request.topic`` dictates.

    With ``events_as_json``, events come as ``EventJson`` (their JSON form, the cheapest way
    to print them) rather than as ``Event``.
    """
    if request.topic is AuditTopic.DELIVERIES:
        yield from select_deliveries(records, serde, request.selection, on_undecodable, stats)
    elif request.topic is AuditTopic.DLT:
        yield from select_dead_letters(records, serde, request.selection, on_undecodable, stats)
    elif events_as_json:
        yield from select_event_json(records, serde, request.selection, on_undecodable, stats)
    else:
        yield from select_events(records, serde, request.selection, on_undecodable, stats)


def json_line_batches(
    request: ReplayRequest,
    batches: Iterable[list[RecordFields]],
    serde: Serde,
    on_undecodable: OnUndecodable,
    stats: ReplayStats,
) -> Iterator[list[bytes]]:
    """The JSON lines (without newlines) of the matching entries of each batch of records
    (``RangeReader.batches``), a list per batch: what ``cpevents replay`` prints by default.

    The same lines as ``json_line`` of each of ``entries``; events take the batch path of
    ``event_json_lines``, the other topics are rendered entry by entry."""
    if request.topic is AuditTopic.EVENTS:
        yield from event_json_lines(batches, serde, request.selection, on_undecodable, stats)
        return
    for batch in batches:
        yield [
            json_line(entry).encode()
            for _, entry in entries(request, map(raw_record, batch), serde, on_undecodable, stats)
        ]


def count_matches(request: ReplayRequest, records: Iterable[RawRecord], serde: Serde) -> int:
    """How many of ``records`` ``request`` keeps (undecodable records are skipped silently)."""
    stats = ReplayStats()
    for _ in entries(request, records, serde, lambda _r, _e: None, stats):
        pass
    return stats.matched
