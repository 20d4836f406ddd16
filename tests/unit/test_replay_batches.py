"""Replay's batch path (``json_line_batches``, ``JsonLines.write_lines``, the transcoder's
fraction tables) prints exactly what the record-by-record path prints.

``cpevents replay`` prints JSON lines a batch at a time; every other use (tables, redelivery,
counting) goes record by record through ``entries``. Both must give the same lines, the same
undecodable reports and the same counts, whatever the filter and the topic.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from plumbing.kafka import deadletter
from schemas import filters, transcode
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from schemas.serde import Serde
from schemas.timestamps import from_epoch_micros
from schemas.webhook import Webhook
from streams.audit import AuditTopic, RecordFilter, ReplayRequest, ReplayStats, entries
from streams.audit.reader import KEY, TOPIC, VALUE, RawRecord, RecordFields, raw_record
from streams.audit.redeliver import redelivery_filter
from streams.audit.render import JsonLines, json_line
from streams.audit.run import json_line_batches
from tests.unit.test_transcode import PLAIN

TOPIC_NAME = "t.events.instance"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fields(offset: int, value: bytes | None, key: bytes | None = b"ten_a") -> RecordFields:
    return (1000 + offset, TOPIC_NAME, 0, offset, key, value, ())


def event(tenant: str = "ten_a", **payload: object) -> Event:
    return Event.new(EventType.INSTANCE_STARTED, tenant).with_payload(dict(payload))


def event_batches(serde: Serde) -> list[list[RecordFields]]:
    """Three batches: fast-path events, events that need the full path, undecodable values,
    other tenants' events, and an empty batch."""
    encode = serde.events.encode
    return [
        [
            fields(0, encode(event(region="eu", n=1), TOPIC_NAME)),
            fields(1, b"\x01junk"),
            fields(2, encode(event("ten_b", region="eu"), TOPIC_NAME), key=b"ten_b"),
            fields(3, encode(event(region="us", x="<escaped>"), TOPIC_NAME)),
        ],
        [],
        [
            fields(4, None),
            fields(5, encode(event(region="eu", f=1.5), TOPIC_NAME)),
            fields(6, encode(event(), TOPIC_NAME)),
            # Our schema's header, so the transcoder is tried first: a cut record and one with
            # trailing bytes must still be reported, never printed.
            fields(7, encode(event(region="eu"), TOPIC_NAME)[:-2]),
            fields(8, encode(event(region="eu"), TOPIC_NAME) + b"\x00"),
        ],
    ]


def per_record(
    request: ReplayRequest, batches: list[list[RecordFields]], serde: Serde
) -> tuple[list[bytes], list[str], ReplayStats]:
    """The lines, undecodable reports and counts of the record-by-record path."""
    reports: list[str] = []
    stats = ReplayStats()
    records = [raw_record(f) for batch in batches for f in batch]
    lines = [
        json_line(entry).encode()
        for _, entry in entries(
            request,
            records,
            serde,
            lambda r, why: reports.append(f"{r.coordinates}: {why}"),
            stats,
            events_as_json=True,
        )
    ]
    return lines, reports, stats


def batched(
    request: ReplayRequest, batches: list[list[RecordFields]], serde: Serde
) -> tuple[list[list[bytes]], list[str], ReplayStats]:
    reports: list[str] = []
    stats = ReplayStats()
    chunks = list(
        json_line_batches(
            request,
            iter(batches),
            serde,
            lambda r, why: reports.append(f"{r.coordinates}: {why}"),
            stats,
        )
    )
    return chunks, reports, stats


def webhook_filter(payload_filter: dict[str, object]) -> RecordFilter:
    webhook_id = new_id(WEBHOOK)
    hook = Webhook(
        id=webhook_id,
        tenant_id="ten_a",
        url="https://example.com/h",
        events=("instance.*",),
        filter_json=filters.filter_text(payload_filter),
    )
    return redelivery_filter(RecordFilter(), hook, webhook_id)


@pytest.mark.parametrize(
    "selection",
    [
        RecordFilter(),
        RecordFilter.of(tenants=["ten_a"]),
        RecordFilter.of(tenants=["ten_b"], types=["instance.*"]),
        RecordFilter.of(types=["deploy.*"]),
        webhook_filter({"payload": {"region": "eu"}}),
    ],
    ids=["everything", "tenant", "tenant-and-type", "no-match", "payload-filter"],
)
def test_event_batches_print_what_the_record_path_prints(selection: RecordFilter) -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    batches = event_batches(serde)
    request = ReplayRequest(selection=selection)
    chunks, reports, stats = batched(request, batches, serde)
    expected, expected_reports, expected_stats = per_record(request, batches, serde)
    assert len(chunks) == len(batches)  # one list per batch, empty ones included
    assert [line for chunk in chunks for line in chunk] == expected
    assert reports == expected_reports
    assert stats == expected_stats
    if selection == RecordFilter():
        # Both kinds of undecodable value are reported with their coordinates, in order.
        assert [r.split(":")[0] for r in reports] == [
            f"{TOPIC_NAME}/0@{offset}" for offset in (1, 4, 7, 8)
        ]
        assert (stats.read, stats.matched, stats.undecodable) == (9, 5, 4)


def test_other_topics_print_what_the_record_path_prints() -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    task = DeliveryTask.for_event(event(a="<x>"), new_id(WEBHOOK), "https://x.example/h")
    delivery = WebhookDelivery(
        id=task.id,
        webhook_id=task.webhook_id,
        event_id=task.event.id,
        tenant_id=task.tenant_id,
        status=DeliveryStatus.DELIVERED,
        attempts=1,
        status_code=200,
    )
    dead_letter_headers = (
        (deadletter.REASON, b"HTTP 410"),
        (deadletter.ORIGINAL_TOPIC, b"t.deliveries"),
        (deadletter.SOURCE, b"delivery"),
    )
    cases: dict[AuditTopic, list[list[RecordFields]]] = {
        AuditTopic.DELIVERIES: [
            [
                fields(0, serde.deliveries.encode(delivery, "t.d")),
                fields(1, None),  # a tombstone: skipped, not undecodable
                fields(2, b"\x00junk"),
            ]
        ],
        AuditTopic.DLT: [
            [
                (1000, "t.dlt", 0, 0, None, serde.tasks.encode(task, "t"), dead_letter_headers),
                fields(1, b"no headers"),
            ]
        ],
    }
    for topic, batches in cases.items():
        request = ReplayRequest(topic=topic)
        chunks, reports, stats = batched(request, batches, serde)
        expected, expected_reports, expected_stats = per_record(request, batches, serde)
        assert [line for chunk in chunks for line in chunk] == expected
        assert expected and reports == expected_reports and len(reports) == 1
        assert stats == expected_stats


@pytest.mark.parametrize("module", [transcode, PLAIN], ids=["compiled", "plain"])
def test_framed_records_take_the_fast_path_only_under_our_headers(module: object) -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    original = event(region="eu")
    data = serde.events.encode(original, TOPIC_NAME)
    framed = module.framed_event_json  # type: ignore[attr-defined]
    ours = {data[:5]}
    fast = framed(data, ours)
    assert fast is not None and fast.json == original.to_json().encode()
    assert framed(data, set()) is None  # a header not known to be ours: the full path decides
    assert framed(data + b"\x00", ours) is None  # trailing bytes
    assert framed(data[:-1], ours) is None  # cut
    assert framed(None, ours) is None and framed(b"", ours) is None


def test_field_positions_are_the_raw_record_fields() -> None:
    record = fields(7, b"value", key=b"ten_a")
    made = raw_record(record)
    assert isinstance(made, RawRecord) and made == record
    assert (made.topic, made.key, made.value) == (record[TOPIC], record[KEY], record[VALUE])
    assert made.coordinates == f"{TOPIC_NAME}/0@7"


def test_written_lines_are_chunked_byte_identical_to_one_by_one() -> None:
    sample = [Event.new(EventType.INSTANCE_STARTED, f"ten_{i}") for i in range(7)]
    texts = [json_line(e).encode() for e in sample]
    one_by_one, batched_out = io.BytesIO(), io.BytesIO()
    lines = JsonLines(one_by_one, chunk_lines=3)
    for e in sample:
        lines.write(e)
    lines.flush()
    chunked = JsonLines(batched_out, chunk_lines=3)
    for chunk in (texts[:2], [], texts[2:6], texts[6:]):
        chunked.write_lines(chunk)
    chunked.flush()
    assert batched_out.getvalue() == one_by_one.getvalue()


@pytest.mark.parametrize(
    "fraction",
    [0, 1, 10, 100, 999, 1_000, 10_000, 100_000, 120_000, 123_000, 123_400, 123_456, 999_999],
)
@pytest.mark.parametrize("module", [transcode, PLAIN], ids=["compiled", "plain"])
def test_fractions_of_a_second_are_written_as_go_writes_them(fraction: int, module: object) -> None:
    timestamp = T0 + timedelta(microseconds=fraction)
    full = Event.new(EventType.INSTANCE_STARTED, "ten_a")
    event_at = Event(id=full.id, type=full.type, tenant_id="ten_a", payload={}, timestamp=timestamp)
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    data = serde.events.encode(event_at, TOPIC_NAME)
    fast = module.event_json(data, 5)  # type: ignore[attr-defined]
    assert fast is not None and fast.json == event_at.to_json().encode()
    assert from_epoch_micros(fast.timestamp_micros) == timestamp
