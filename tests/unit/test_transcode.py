"""The Avro-to-JSON transcoder agrees with the full path (decode to Event, marshal) everywhere.

Whenever ``event_json`` answers, its bytes must equal ``Event.from_avro(...).to_json()`` and the
full path must accept the record; whenever it declines (None), the full path decides. Records are
generated raw (any strings, payload texts in canonical and non-canonical forms, odd timestamps)
and corrupted, so that the transcoder sees what a foreign producer could write. Both the
compiled module (when installed with mypyc) and its plain-Python source are checked.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import attempt_records, gojson, ids, transcode
from schemas.avsc import schema_dict
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import new_id
from schemas.serde import DecodeError, Serde, flat_record_reader, webhook_delivery_body
from schemas.timestamps import from_epoch_micros, to_epoch_micros
from tests.unit.test_wire import PLAIN_WIRE, plain_module

EVENT_SCHEMA = fastavro.parse_schema(schema_dict("Event"))
FULL_READER = flat_record_reader(schema_dict("Event"))
assert FULL_READER is not None


# schemas/transcode.py and schemas/attempt_records.py run by the interpreter, on the plain
# wire module too, even when a compiled build is installed.
PLAIN = plain_module("transcode", {"wire": PLAIN_WIRE})
PLAIN_ATTEMPTS = plain_module("attempt_records", {"wire": PLAIN_WIRE})
TRANSCODERS: list[Callable[[bytes, int], Any]] = [transcode.event_json, PLAIN.event_json]


def full_path(body: bytes) -> bytes | None:
    """What replay and delivery do without the transcoder; None where they report an error."""
    assert FULL_READER is not None
    try:
        return Event.from_avro(FULL_READER(body, 0)).to_json().encode()
    except (ValueError, IndexError, OverflowError, KeyError, TypeError):
        return None


def avro(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, EVENT_SCHEMA, record)
    return out.getvalue()


def assert_agrees(body: bytes) -> None:
    expected = full_path(body)
    for event_json in TRANSCODERS:
        fast = event_json(body, 0)
        if fast is None:
            continue
        assert fast.end <= len(body)
        if fast.end != len(body):
            continue  # trailing bytes: the caller takes the full path, which refuses them
        assert expected is not None, f"transcoded a record the full path refuses: {body!r}"
        assert fast.json == expected
        event = Event.from_json(expected)
        assert (fast.type, fast.tenant_id, fast.instance_id) == (
            str(event.type),
            event.tenant_id,
            event.instance_id,
        )


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**17, max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["api:1.4.2", "<a&b>", "\u2028", "\u2029", 'q"1', "\\", "\x7f", "é", "\x00"])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
payload_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def _python_dumps(value: Any) -> str:
    return json.dumps(value)  # spaces, insertion order, ASCII escapes


def _unsorted(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


payload_texts = (
    payload_objects.map(gojson.dumps)
    | payload_objects.map(_python_dumps)
    | payload_objects.map(_unsorted)
    | st.sampled_from(
        [
            "",
            "{}",
            "[]",
            "null",
            '{"a":1,"a":2}',
            '{"b":1,"a":2}',
            '{"a":-0}',
            '{"a":01}',
            '{"a":1.0}',
            '{"a":1e5}',
            '{"a":' + "9" * 5000 + "}",
            '{"a":"\\u00e9"}',
            '{"a" :1}',
            '{"a":tru}',
            '{"a":[1,]}',
            '{"a":{}}',
            '{"a":[]}',
            '{"a":"x"}junk',
            "\ufeff{}",
            '{"a":"' + "[" * 100 + '"}',
            "[" * 70 + "]" * 70,
            '{"a":' + "[" * 70 + "]" * 70 + "}",
        ]
    )
    | st.text(max_size=30)
)
typeid_like = st.one_of(
    st.builds(lambda: new_id("evt")),
    st.builds(lambda: new_id("inst")),
    st.sampled_from(["evt_8zzzzzzzzzzzzzzzzzzzzzzzzz", "evt_00000000000000000000000000", "evt_"]),
    st.text(max_size=32),
)
plain_or_any_text = st.sampled_from(["ten_a", "acme", " ", "a b", "", "<t>", "t\u2028"]) | st.text()


WILD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": typeid_like,
    "type": st.sampled_from([str(t) for t in EventType]) | st.text(max_size=20),
    "tenant_id": plain_or_any_text,
    "instance_id": st.none() | typeid_like,
    "actor_id": st.none() | plain_or_any_text,
    "payload": payload_texts,
    "timestamp": st.integers(min_value=-62135596800_000000 - 10, max_value=253402300800_000000 + 10)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1),
}


@st.composite
def raw_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event's record with one to three fields replaced by anything a producer could
    write (one wild field at a time reaches each field's checks; more, their interplay)."""
    record: dict[str, Any] = {
        "id": new_id("evt"),
        "type": draw(st.sampled_from([str(t) for t in EventType])),
        "tenant_id": draw(st.sampled_from(["ten_a", "acme", "a b"])),
        "instance_id": draw(st.none() | st.builds(lambda: new_id("inst"))),
        "actor_id": draw(st.none() | st.sampled_from(["usr_1", ""])),
        "payload": draw(payload_objects.map(gojson.dumps)),
        "timestamp": draw(st.integers(1_700_000_000_000000, 1_900_000_000_000000)),
    }
    for name in draw(st.lists(st.sampled_from(list(WILD_FIELDS)), max_size=3, unique=True)):
        record[name] = draw(WILD_FIELDS[name])
    return record


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_records())
def test_transcoder_agrees_with_the_full_path_on_raw_records(record: dict[str, Any]) -> None:
    assert_agrees(avro(record))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_records(), st.data())
def test_transcoder_agrees_on_corrupted_records(
    record: dict[str, Any], data: st.DataObject
) -> None:
    body = bytearray(avro(record))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 3))
    assert_agrees(bytes(body[: len(body) - cut] if cut else body))


@settings(deadline=None)
@given(payload_objects)
@example({"replicas": 3, "region": "eu-west-1", "image": "registry.example/api:1.4.2"})
def test_events_our_producers_write_take_the_fast_path(payload: dict[str, Any]) -> None:
    event = (
        Event.new(EventType.INSTANCE_SCALED, "ten_acme")
        .with_instance(new_id("inst"))
        .with_actor("usr_42")
        .with_payload(payload)
    )
    body = avro(event.to_avro())
    fast = transcode.event_json(body, 0)
    plain_payload = "\\" not in gojson.dumps(payload) and not any(
        isinstance(v, float) or (isinstance(v, int) and abs(v) >= 10**18) for v in _leaves(payload)
    )
    if plain_payload and not any(c in gojson.dumps(payload) for c in "\u2028\u2029\x7f"):
        assert fast is not None
        assert fast.json == event.to_json().encode()
    assert_agrees(body)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_malformed_unions_and_lengths_take_the_full_path() -> None:
    event = Event.new(EventType.TENANT_CREATED, "t").with_actor("usr_1")
    body = avro(event.to_avro())
    # Every string here is shorter than 64 bytes: its length is one varint byte.
    tenant_length = 1 + len(event.id) + 1 + len("tenant.created")
    union = tenant_length + 1 + len("t")  # the instance_id branch
    assert body[union] == 0
    actor_union = union + 1
    assert body[actor_union] == 2 and body[actor_union + 1] == 2 * len("usr_1")
    malformed = [
        body[:at] + bytes([branch]) + body[at + 1 :]
        for at in (union, actor_union)
        for branch in (1, 3, 4, 0x80)
    ]
    # Negative string lengths (zig-zag 1 is -1) where the tenant's and the actor's stand.
    for at in (tenant_length, actor_union + 1):
        malformed.append(body[:at] + b"\x01" + body[at + 1 :])
    for record in malformed:
        assert_agrees(record)
        for event_json in TRANSCODERS:
            assert event_json(record, 0) is None


@pytest.mark.parametrize(
    "micros",
    [0, 1, -1, 999_999, 86_400_000_000 - 1, -62135596800_000000, 253402300799_999999],
)
def test_timestamps_at_the_edges(micros: int) -> None:
    event = Event.new(EventType.TENANT_CREATED, "t")
    record = {**event.to_avro(), "timestamp": micros}
    body = avro(record)
    fast = transcode.event_json(body, 0)
    assert fast is not None
    assert fast.json == full_path(body)


def test_the_record_end_is_reported_for_nested_use() -> None:
    body = avro(Event.new(EventType.TENANT_CREATED, "t").to_avro())
    fast = transcode.event_json(body + b"tail", 0)
    assert fast is not None and fast.end == len(body)
    shifted = transcode.event_json(b"xx" + body, 2)
    assert shifted is not None and shifted.json == fast.json


@pytest.mark.parametrize(
    "payload",
    [
        '{"a":' + "9" * 5000 + "}",  # Python refuses to parse it: the full path reports it
        '{"b":1,"a":2}',
        '{"a":1,"a":2}',
        '{"a":-0}',
        '{"a":1.5}',
        '{"a":"\\u00e9"}',
        '{"a":"<b>"}',
        '{"a":"\u2028"}',
        '{"a": 1}',
        "[]",
    ],
)
def test_payloads_not_in_gos_form_take_the_full_path(payload: str) -> None:
    body = avro({**Event.new(EventType.TENANT_CREATED, "t").to_avro(), "payload": payload})
    for event_json in TRANSCODERS:
        assert event_json(body, 0) is None
    assert_agrees(body)


# -- delivery tasks -------------------------------------------------------------------------------

TASK_SCHEMA = fastavro.parse_schema(schema_dict("DeliveryTask"))
TASK_TRANSCODERS: list[Callable[[bytes, int], Any]] = [
    transcode.delivery_task_json,
    PLAIN.delivery_task_json,
]


def task_avro(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, TASK_SCHEMA, record)
    return out.getvalue()


def full_task_path(body: bytes) -> DeliveryTask | None:
    try:
        record = fastavro.schemaless_reader(io.BytesIO(body), TASK_SCHEMA, TASK_SCHEMA)
        assert isinstance(record, dict)
        return DeliveryTask.from_avro(record)
    except (ValueError, IndexError, OverflowError, KeyError, TypeError, EOFError, AssertionError):
        return None


def assert_task_agrees(body: bytes) -> None:
    expected = full_task_path(body)
    for task_json in TASK_TRANSCODERS:
        fast = task_json(body, 0)
        if fast is None or fast.end != len(body):
            continue
        assert expected is not None, f"transcoded a task the full path refuses: {body!r}"
        assert (fast.id, fast.webhook_id, fast.tenant_id, fast.url) == (
            expected.id,
            expected.webhook_id,
            expected.tenant_id,
            expected.url,
        )
        assert fast.event.json == expected.event.to_json().encode()
        assert fast.event.id == expected.event.id
        assert from_epoch_micros(fast.event.timestamp_micros) == expected.event.timestamp
        assert from_epoch_micros(fast.created_at_micros) == expected.created_at


# The first and last microsecond datetime can hold, and one beyond each.
DATETIME_EDGES = [
    -62_135_596_800_000_000,
    -62_135_596_800_000_001,
    253_402_300_799_999_999,
    253_402_300_800_000_000,
]


@pytest.mark.parametrize("created_at", DATETIME_EDGES)
def test_task_creation_times_at_the_edges_of_datetime(created_at: int) -> None:
    task = DeliveryTask.for_event(Event.new(EventType.TENANT_CREATED, "t"), new_id("hook"), "u")
    body = task_avro({**task.to_avro(), "created_at": created_at})
    assert_task_agrees(body)
    in_range = full_task_path(body) is not None
    for task_json in TASK_TRANSCODERS:
        assert (task_json(body, 0) is not None) == in_range


@st.composite
def raw_tasks(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(raw_records())
    return {
        "id": draw(st.sampled_from([ids.delivery_id(new_id("evt"), new_id("hook"))]) | st.text()),
        "webhook_id": draw(st.builds(lambda: new_id("hook")) | st.text()),
        "tenant_id": draw(plain_or_any_text),
        "url": draw(st.sampled_from(["https://hooks.example/a?b=1", "http://127.0.0.1:9/x"])),
        "event": event,
        "created_at": draw(
            st.integers(1_700_000_000_000000, 1_900_000_000_000000)
            | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.sampled_from(DATETIME_EDGES)
        ),
    }


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_tasks(), st.data())
def test_task_transcoder_agrees_with_the_full_path(
    record: dict[str, Any], data: st.DataObject
) -> None:
    body = bytearray(task_avro(record))
    assert_task_agrees(bytes(body))
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] = data.draw(st.integers(0, 255))
        assert_task_agrees(bytes(body))


def test_a_routed_task_takes_the_fast_path() -> None:
    event = Event.new(EventType.DEPLOY_FAILED, "ten_a").with_payload({"reason": "oom", "exit": 137})
    task = DeliveryTask.for_event(event, new_id("hook"), "https://hooks.example/x")
    fast = transcode.delivery_task_json(task_avro(task.to_avro()), 0)
    assert fast is not None and fast.event.json == event.to_json().encode()
    assert from_epoch_micros(fast.created_at_micros) == task.created_at
    # The event's own time travels beside its JSON (the delivery latency starts there).
    assert from_epoch_micros(fast.event.timestamp_micros) == event.timestamp


@pytest.mark.parametrize("payload", [{"cpu": 0.5}, {"n": 1}, {}])
def test_serde_gives_the_same_task_and_event_json_whichever_path(payload: dict[str, Any]) -> None:
    # {"cpu": 0.5} has a float: the full path renders it; the others are transcoded.
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    event = Event.new(EventType.HEALTH_DEGRADED, "ten_a").with_payload(payload)
    task = DeliveryTask.for_event(event, new_id("hook"), "https://hooks.example/x")
    data = serde.tasks.encode(task, "t.deliveries")
    serde.tasks.decode(data, "t.deliveries")  # the first record of a schema id learns it
    got = serde.task_json(data, "t.deliveries")
    assert (got.id, got.webhook_id, got.tenant_id, got.url, got.event.id) == (
        task.id,
        task.webhook_id,
        task.tenant_id,
        task.url,
        event.id,
    )
    assert got.event.json == event.to_json().encode()
    assert from_epoch_micros(got.created_at_micros) == task.created_at
    event_data = serde.events.encode(event, "t.events.health")
    serde.events.decode(event_data, "t.events.health")
    assert serde.event_json(event_data, "t.events.health").json == event.to_json().encode()
    with pytest.raises(DecodeError):
        serde.task_json(data[:-3], "t.deliveries")


# -- attempt records ------------------------------------------------------------------------------

DELIVERY_SCHEMA = fastavro.parse_schema(schema_dict("WebhookDelivery"))
aware_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(
    st.builds(
        WebhookDelivery,
        id=st.text(),
        webhook_id=st.text(),
        event_id=st.text(),
        tenant_id=st.text(),
        status=st.sampled_from(DeliveryStatus),
        attempts=st.integers(-(2**31), 2**31 - 1),
        status_code=st.integers(-(2**31), 2**31 - 1),
        next_retry=st.none() | aware_times,
        error=st.none() | st.text(),
        duration_ms=st.floats(allow_nan=False) | st.integers(0, 10**6),
        created_at=aware_times,
        updated_at=aware_times,
    )
)
def test_attempt_records_are_written_as_fastavro_writes_them(record: WebhookDelivery) -> None:
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, DELIVERY_SCHEMA, record.to_avro())
    assert webhook_delivery_body(record) == expected.getvalue()
    fields = (record.id, record.webhook_id, record.event_id, record.tenant_id, str(record.status))
    numbers = (record.status_code, record.attempts)
    retry = None if record.next_retry is None else to_epoch_micros(record.next_retry)
    times = (to_epoch_micros(record.created_at), to_epoch_micros(record.updated_at))
    for write in (attempt_records.webhook_delivery_avro, PLAIN_ATTEMPTS.webhook_delivery_avro):
        assert write(*fields, *numbers, retry, record.error, record.duration_ms, *times) == (
            expected.getvalue()
        )
    decoded = fastavro.schemaless_reader(io.BytesIO(expected.getvalue()), DELIVERY_SCHEMA)
    assert isinstance(decoded, dict)
    assert WebhookDelivery.from_avro(decoded) == record


def test_attempt_record_numbers_out_of_their_avro_range_are_refused() -> None:
    record = WebhookDelivery(
        id="d",
        webhook_id="w",
        event_id="e",
        tenant_id="t",
        status=DeliveryStatus.DELIVERED,
        attempts=2**31,
        status_code=200,
    )
    with pytest.raises(OverflowError, match="int"):
        webhook_delivery_body(record)


ATTEMPT_SERDE = Serde(f"mock://{uuid.uuid4().hex}")


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(DeliveryStatus),
    attempts=st.integers(0, 2**31 - 1),
    status_code=st.integers(0, 599),
    error=st.none() | st.text(),
    next_retry=st.none() | aware_times,
    duration_ms=st.floats(0, 1e9),
    updated_at=aware_times,
)
def test_attempt_records_from_fields_are_the_models_records(
    status: DeliveryStatus,
    attempts: int,
    status_code: int,
    error: str | None,
    next_retry: datetime | None,
    duration_ms: float,
    updated_at: datetime,
) -> None:
    serde, topic = ATTEMPT_SERDE, "t.webhook-deliveries"
    event = Event.new(EventType.HEALTH_DEGRADED, "ten_a")
    task = DeliveryTask.for_event(event, new_id("hook"), "https://hooks.example/x")
    task_json = serde.task_json(serde.tasks.encode(task, "t.deliveries"), "t.deliveries")
    model = WebhookDelivery(
        id=task.id,
        webhook_id=task.webhook_id,
        event_id=event.id,
        tenant_id=task.tenant_id,
        status=status,
        attempts=attempts,
        status_code=status_code,
        next_retry=next_retry,
        error=error,
        duration_ms=duration_ms,
        created_at=task.created_at,
        updated_at=updated_at,
    )
    written = serde.attempt_record(
        topic,
        task_json,
        status,
        attempts,
        status_code,
        error,
        None if next_retry is None else to_epoch_micros(next_retry),
        duration_ms,
        to_epoch_micros(updated_at),
    )
    assert written == serde.deliveries.encode(model, topic)
    assert serde.deliveries.decode(written, topic) == model
