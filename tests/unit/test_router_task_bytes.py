"""Task bytes built from event bytes equal what the Serde encodes; the scan accepts no record the
full decoder rejects; the fast delivery id equals the typeid library's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from typeid import TypeID

from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import _DELIVERY_NAMESPACE, WEBHOOK, delivery_id, new_id
from schemas.samples import sample_events
from schemas.serde import DecodeError, Serde
from streams.task_bytes import TaskBytes, avro_long, avro_string
from tests.fixtures_streams import raw_event_bytes

TOPIC = "unit.events.instance"
TASKS = "unit.deliveries"
SERDE = Serde(f"mock://{uuid.uuid4().hex}")


def _events() -> list[Event]:
    events = sample_events("ten_a") + sample_events("tenant with ü and spaces")
    events.append(Event.new(EventType.QUOTA_EXCEEDED, "t" * 300).with_payload({"k": "v" * 200}))
    events.append(Event.new(EventType.DEPLOY_FAILED, "ten_b").with_actor("usr_é"))
    return events


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.type)
def test_task_bytes_equal_the_serde_encoding(event: Event) -> None:
    value = SERDE.events.encode(event, TOPIC)
    SERDE.events.decode(value, TOPIC)
    assert SERDE.events.written_with_our_schema(value)
    webhook_id = new_id(WEBHOOK)
    url = "https://example.com/hook/ü" + "x" * 100
    created_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    task = DeliveryTask.for_event(event, webhook_id, url)
    task = DeliveryTask(task.id, task.webhook_id, task.tenant_id, task.url, event, created_at)
    expected = SERDE.tasks.encode(task, TASKS)
    stamp = avro_long((created_at - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND)
    builder = TaskBytes(SERDE.tasks.schema_id(TASKS))
    built = builder.build(task.id, webhook_id, url, event.tenant_id, value, stamp)
    assert built == expected
    assert SERDE.tasks.decode(built, TASKS) == task
    # a url change of the same webhook is picked up (the builder caches encoded fields)
    other = builder.build(
        task.id, webhook_id, "https://example.com/new", event.tenant_id, value, stamp
    )
    assert SERDE.tasks.decode(other, TASKS).url == "https://example.com/new"


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31, -(2**63), 2**63 - 1])
def test_avro_long_matches_fastavro(value: int) -> None:
    import io

    import fastavro

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, "long", value)
    assert avro_long(value) == buffer.getvalue()
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, "string", "ü" * value if 0 <= value < 100 else "x")
    assert avro_string("ü" * value if 0 <= value < 100 else "x") == buffer.getvalue()


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_avro_long_refuses_what_does_not_fit_a_long(value: int) -> None:
    with pytest.raises(OverflowError):
        avro_long(value)


def _full_decode_accepts(value: bytes) -> bool:
    try:
        SERDE.events.decode(value, TOPIC)
    except DecodeError:
        return False
    return True


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "instance.exploded"},
        {"id": "evt_nope"},
        {"id": new_id(WEBHOOK)},
        {"tenant_id": "   "},
        {"tenant_id": ""},
        {"instance_id": "inst_bad"},
        {"payload": "[1, 2]"},
        {"payload": '{"a": NaN}'},
        {"payload": "\ufeff{}"},
        {"payload": "{"},
    ],
)
def test_contract_breaking_records_are_refused_by_the_decoder(changes: dict[str, str]) -> None:
    """The router splices only records the Event codec accepted; these it must refuse."""
    assert not _full_decode_accepts(raw_event_bytes(SERDE, TOPIC, **changes))


def test_empty_payload_is_an_empty_object() -> None:
    assert _full_decode_accepts(raw_event_bytes(SERDE, TOPIC, payload=""))


def test_delivery_id_equals_the_typeid_library() -> None:
    for i in range(3000):
        event_id = new_id("evt")
        webhook_id = new_id(WEBHOOK) if i % 3 else f"hook-{i}-ü"
        name = f"{event_id}/{webhook_id}"
        expected = TypeID.from_uuid(prefix="deli", suffix=uuid.uuid5(_DELIVERY_NAMESPACE, name))  # type: ignore[arg-type]
        assert delivery_id(event_id, webhook_id) == str(expected)
