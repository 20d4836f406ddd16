"""The fast paths replay relies on give exactly what the plain paths give.

Each fast path (flat Avro reader, field-by-field Event JSON writer, isoformat-based RFC 3339,
the precise float check of gojson, chunked JSON lines) is compared with a straightforward
reference on generated values, including values built to reach the edge cases.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import gojson
from schemas.avsc import schema_dict
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import new_id
from schemas.serde import HEADER_SIZE, DecodeError, Serde, flat_record_reader
from schemas.timestamps import format_rfc3339
from streams.audit.render import JsonLines, json_line


def reference_rfc3339(value: datetime) -> str:
    """The original formatter: field by field, trailing fractional zeros dropped."""
    v = value.astimezone(UTC)
    text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        text += "." + f"{v.microsecond:06d}".rstrip("0")
    return text + "Z"


def reference_event_json(event: Event) -> str:
    """Go's struct form through the exact (slow) encoder only."""
    parts = []
    for key, value in event.to_json_fields():
        out: list[str] = []
        gojson._encode(key, out)
        out.append(":")
        if key == "timestamp":
            value = reference_rfc3339(event.timestamp)
        gojson._encode(value, out)
        parts.append("".join(out))
    return "{" + ",".join(parts) + "}"


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    # text that looks like a float to a naive scan ("api:1.4.2") or needs Go's HTML escaping
    | st.sampled_from(["api:1.4.2", "[1.5", ",2e5", "<a&b>", "\u2028", 'q"1.0', "\\1e3"])
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)
timestamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
events = st.builds(
    lambda event_type, tenant, instance, actor, payload, timestamp: Event(
        id=new_id("evt"),
        type=event_type,
        tenant_id=tenant,
        instance_id=new_id("inst") if instance else None,
        actor_id=actor,
        payload=payload,
        timestamp=timestamp,
    ),
    st.sampled_from(list(EventType)),
    st.text(min_size=1).filter(str.strip),
    st.booleans(),
    st.none() | st.text(),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    timestamps,
)


@settings(max_examples=300, deadline=None)
@given(timestamps)
def test_rfc3339_matches_the_field_by_field_formatter(value: datetime) -> None:
    assert format_rfc3339(value) == reference_rfc3339(value)


@settings(max_examples=300, deadline=None)
@given(events)
def test_event_json_matches_the_exact_encoder(event: Event) -> None:
    assert event.to_json() == reference_event_json(event)
    assert event.to_json() == gojson.dumps_ordered(event.to_json_fields())


def test_strings_that_look_like_floats_take_the_fast_path_and_stay_exact() -> None:
    value = {"image": "registry/api:1.4.2", "n": 3, "f": [0.5, 1e21]}
    out: list[str] = []
    gojson._encode(value, out)
    assert gojson.dumps(value) == "".join(out)
    assert gojson._NO_FLOAT_OUTSIDE_STRINGS.fullmatch('{"image":"api:1.4.2","n":3}')
    assert not gojson._NO_FLOAT_OUTSIDE_STRINGS.fullmatch('{"image":"api:1.4.2","n":3.5}')
    assert not gojson._NO_FLOAT_OUTSIDE_STRINGS.fullmatch('{"a":"\\"","n":[1e+21]}')


EVENT_SCHEMA = fastavro.parse_schema(schema_dict("Event"))
FLAT_READER = flat_record_reader(schema_dict("Event"))


def fastavro_read(body: bytes) -> Any:
    stream = io.BytesIO(body)
    record = fastavro.schemaless_reader(stream, EVENT_SCHEMA, None)
    if stream.tell() != len(body):
        raise ValueError("trailing bytes")
    return record


def outcome(read: Any, body: bytes) -> Any:
    try:
        return read(body)
    except Exception:  # which exception differs; that both fail is what matters
        return "error"


def test_flat_reader_is_only_for_flat_records() -> None:
    assert FLAT_READER is not None
    assert flat_record_reader(schema_dict("WebhookDelivery")) is None  # ints, doubles
    assert flat_record_reader(schema_dict("DeliveryTask")) is None  # a nested record


@settings(max_examples=300, deadline=None)
@given(events, st.data())
def test_flat_reader_reads_what_fastavro_reads_even_from_corrupt_bytes(
    event: Event, data: st.DataObject
) -> None:
    assert FLAT_READER is not None
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, EVENT_SCHEMA, event.to_avro())
    body = buffer.getvalue()
    assert FLAT_READER(b"\x00" * HEADER_SIZE + body, HEADER_SIZE) == fastavro_read(body)
    # Truncated, extended and flipped bytes: both readers fail, or both read the same record.
    cut = data.draw(st.integers(0, len(body)))
    flip = data.draw(st.integers(0, len(body) - 1))
    flipped = body[:flip] + bytes([body[flip] ^ data.draw(st.integers(1, 255))]) + body[flip + 1 :]
    for corrupt in (body[:cut], body + b"\x02", flipped):
        expected = outcome(fastavro_read, corrupt)
        assert (
            outcome(lambda b: FLAT_READER(b"\x00" * HEADER_SIZE + b, HEADER_SIZE), corrupt)
            == expected
        )


def test_codec_uses_the_flat_reader_and_still_reports_contract_breaks() -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    event = Event.new(EventType.INSTANCE_STARTED, "ten_a").with_payload({"image": "api:1.4.2"})
    data = serde.events.encode(event, "t")
    assert serde.events.decode(data, "t") == event  # first record: through fastavro
    assert serde.events._flat_ids  # our own schema: later records take the flat reader
    assert serde.events.decode(data, "t") == event
    bad = Event.new(EventType.INSTANCE_STARTED, "ten_a").to_avro() | {"id": "evt_nope"}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, EVENT_SCHEMA, bad)
    header = data[:HEADER_SIZE]
    for broken, reason in (
        (header + buffer.getvalue(), "breaks the contract"),
        (data[:-3], "Avro decoding failed"),
        (data + b"\x00", "trailing"),
    ):
        try:
            serde.events.decode(broken, "t")
        except DecodeError as exc:
            assert reason in exc.reason
        else:
            raise AssertionError(f"{broken!r} decoded")


def test_json_lines_are_written_in_chunks_byte_identical_to_line_by_line() -> None:
    sample = [
        Event.new(EventType.INSTANCE_STARTED, f"ten_{i}").with_payload({"i": i, "x": "<1.5>"})
        for i in range(7)
    ]
    out = io.BytesIO()
    lines = JsonLines(out, chunk_lines=3)
    for event in sample:
        lines.write(event)
    lines.flush()
    assert out.getvalue() == b"".join(json_line(e).encode() + b"\n" for e in sample)
    assert [json.loads(line)["tenant_id"] for line in out.getvalue().splitlines()] == [
        e.tenant_id for e in sample
    ]
