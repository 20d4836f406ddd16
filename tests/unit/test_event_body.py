"""The Event body writer (``schemas.serde.event_body``) writes what fastavro writes.

Every event ``KafkaBus`` and the gateway publish goes through it, so it must stay
byte-identical to fastavro's encoding of ``Event.to_avro()`` (itself checked against
confluent-kafka's serializer in test_serde.py) on any event the model accepts.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.avsc import schema_dict
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import EVENT, INSTANCE, new_id
from schemas.samples import sample_events
from schemas.serde import Serde, event_body

EVENT_SCHEMA = fastavro.parse_schema(schema_dict("Event"))


def fastavro_body(event: Event) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, EVENT_SCHEMA, event.to_avro())
    return out.getvalue()


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_objects = st.dictionaries(
    st.text(max_size=12),
    st.recursive(
        json_leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ),
    max_size=6,
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    payload: dict[str, Any] = draw(json_objects)
    return Event(
        id=new_id(EVENT),
        type=draw(st.sampled_from(list(EventType))),
        tenant_id=draw(st.text(min_size=1, max_size=80).filter(str.strip)),
        timestamp=draw(
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            )
        ),
        instance_id=draw(st.none() | st.builds(new_id, st.just(INSTANCE))),
        actor_id=draw(st.none() | st.text(max_size=200)),
        payload=payload,
    )


@settings(max_examples=300, deadline=None)
@given(events())
def test_event_body_is_what_fastavro_writes(event: Event) -> None:
    assert event_body(event) == fastavro_body(event)


def test_long_strings_and_payloads_take_multi_byte_lengths() -> None:
    event = (
        Event.new(EventType.INSTANCE_CREATED, "t" * 300)
        .with_actor("é" * 5000)
        .with_payload({"blob": "<&>" * 20000})
    )
    assert event_body(event) == fastavro_body(event)


def test_the_codec_frames_the_body_and_decodes_it_back() -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    for event in sample_events():
        data = serde.events.encode(event, "ctrlplane.events.x")
        assert data == serde.events.frame(fastavro_body(event), "ctrlplane.events.x")
        assert serde.events.decode(data, "ctrlplane.events.x") == event
