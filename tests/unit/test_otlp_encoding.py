"""plumbing/otlp_encoding.py against the reference, the OpenTelemetry SDK's OTLP encoder.

Spans are real SDK spans (TracerProvider, SimpleSpanProcessor, InMemorySpanExporter), generated
with hypothesis over everything the encoder writes: resources (attributes, schema_url, equal but
distinct objects), scopes (name, version, schema_url, attributes), kinds, parents (none, local,
remote), trace_state, attributes of every type (NaN too: protobuf compares doubles bit for bit,
and both encoders keep the bits), events, links, status, and span limits that drop attributes,
events and links. Each batch must parse to a message equal to the SDK's, and be the same bytes.
"""

from __future__ import annotations

import enum
import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

import plumbing
from plumbing import otlp_encoding
from plumbing.otlp_encoding import UnsupportedSpan


def _implementations() -> list[ModuleType]:
    """The module as imported and, when that is the mypyc build (setup.py), its Python source
    as well: a machine without a C compiler runs that one, and both must be right."""
    if otlp_encoding.__file__ is not None and otlp_encoding.__file__.endswith(".py"):
        return [otlp_encoding]
    source = Path(plumbing.__file__ or "").parent / "otlp_encoding.py"
    spec = importlib.util.spec_from_file_location("plumbing._otlp_encoding_source", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [otlp_encoding, module]


IMPLEMENTATIONS = _implementations()


def _build_name(module: ModuleType) -> str:
    return "source" if (module.__file__ or "").endswith(".py") else "compiled"


def assert_same_as_sdk(spans: Sequence[ReadableSpan]) -> bytes:
    """Our bytes (from each implementation) parse to the SDK encoder's message, and are its
    serialization."""
    expected = sdk_encode_spans(spans)
    serialized = expected.SerializePartialToString()
    data = b""
    for implementation in IMPLEMENTATIONS:
        data = implementation.encode_spans(spans)
        parsed = ExportTraceServiceRequest.FromString(data)
        assert parsed == expected, implementation.__file__
        assert data == serialized, implementation.__file__
    return data


# -- strategies ---------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Around the varint byte boundaries, where length and int encodings change size, and the end
# of the encoder's table of small ints (0 to 1023).
EDGE_INTS = st.sampled_from(
    [0, 1, 127, 128, 1023, 1024, 16383, 16384, -1, -128, 2**63 - 1, -(2**63)]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    EDGE_INTS,
    st.floats(),  # NaN (with payloads), infinities, -0.0
    st.text(max_size=20),  # "" and any Unicode but lone surrogates
    st.text(max_size=200, alphabet="ab€"),  # lengths beyond one varint byte
    st.binary(max_size=20),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),  # [] too
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=3),
    ),
    max_leaves=8,
)
KEYS = st.one_of(st.text(max_size=12), st.sampled_from(["http.method", "cpevents.attempt"]))
ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=6)
SMALL_ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=3)

# W3C tracestate: a key starts with a lowercase letter; a value is printable ASCII but "," and
# "=" (and no space, here).
TRACE_STATE_VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",=")
TRACE_STATES = st.dictionaries(
    st.builds(str.__add__, st.sampled_from("abz"), st.text("az09_-*/", max_size=6)),
    st.text(TRACE_STATE_VALUE_CHARS, min_size=1, max_size=8),
    max_size=3,
).map(lambda pairs: TraceState(list(pairs.items())))


@st.composite
def span_contexts(draw: st.DrawFn, *, valid: bool = True) -> SpanContext:
    low = 1 if valid else 0
    return SpanContext(
        trace_id=draw(st.integers(low, 2**128 - 1)),
        span_id=draw(st.integers(low, 2**64 - 1)),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))),
        trace_state=draw(TRACE_STATES),
    )


LIMITS = st.builds(
    SpanLimits,
    max_span_attributes=st.none() | st.integers(0, 4),
    max_events=st.none() | st.integers(0, 3),
    max_links=st.none() | st.integers(0, 3),
    max_event_attributes=st.none() | st.integers(0, 3),
    max_link_attributes=st.none() | st.integers(0, 3),
    max_attribute_length=st.none() | st.integers(0, 8),
)
TIMES = st.none() | st.just(0) | st.integers(1, 2**64 - 1)


@dataclass
class ResourcePlan:
    attributes: dict[str, Any]
    schema_url: str | None
    create: bool  # Resource.create (SDK defaults merged in) rather than Resource(...)


@dataclass
class ScopePlan:
    name: str
    version: str | None
    schema_url: str | None
    attributes: dict[str, Any] | None


@dataclass
class SpanPlan:
    provider: int
    scope: int
    fresh_tracer: bool  # a new get_tracer call: an equal scope, another object
    name: str
    kind: SpanKind
    parent: SpanContext | str  # a remote parent's context, "local" or "none"
    start_time: int | None
    end_time: int | None
    attributes: dict[str, Any]
    links: list[tuple[SpanContext, dict[str, Any]]]
    added_links: list[tuple[SpanContext, dict[str, Any]]]
    events: list[tuple[str, dict[str, Any], int | None]]
    status: tuple[StatusCode, str | None] | None


@dataclass
class BatchPlan:
    resources: list[ResourcePlan]
    providers: list[tuple[int, SpanLimits]]  # a resource plan each: equal resources, two objects
    scopes: list[ScopePlan]
    spans: list[SpanPlan]


LINKS = st.lists(st.tuples(span_contexts(valid=False), SMALL_ATTRIBUTES), max_size=3)


@st.composite
def batch_plans(draw: st.DrawFn) -> BatchPlan:
    resources = draw(
        st.lists(
            st.builds(
                ResourcePlan,
                attributes=ATTRIBUTES,
                schema_url=st.none() | st.text(max_size=20),
                create=st.booleans(),
            ),
            min_size=1,
            max_size=2,
        )
    )
    providers = draw(
        st.lists(st.tuples(st.integers(0, len(resources) - 1), LIMITS), min_size=1, max_size=3)
    )
    scopes = draw(
        st.lists(
            st.builds(
                ScopePlan,
                name=st.text(max_size=10),
                version=st.none() | st.text(max_size=5),
                schema_url=st.none() | st.text(max_size=10),
                attributes=st.none() | SMALL_ATTRIBUTES,
            ),
            min_size=1,
            max_size=3,
        )
    )
    spans = draw(
        st.lists(
            st.builds(
                SpanPlan,
                provider=st.integers(0, len(providers) - 1),
                scope=st.integers(0, len(scopes) - 1),
                fresh_tracer=st.booleans(),
                name=st.text(max_size=20),
                kind=st.sampled_from(SpanKind),
                parent=st.one_of(st.sampled_from(["none", "local"]), span_contexts()),
                start_time=TIMES,
                end_time=TIMES,
                attributes=ATTRIBUTES,
                links=LINKS,
                added_links=LINKS,
                events=st.lists(
                    st.tuples(st.text(max_size=8), SMALL_ATTRIBUTES, TIMES), max_size=3
                ),
                status=st.none()
                | st.tuples(st.sampled_from(StatusCode), st.none() | st.text(max_size=10)),
            ),
            max_size=6,
        )
    )
    return BatchPlan(resources, providers, scopes, spans)


def _resource(plan: ResourcePlan) -> Resource:
    if plan.create:
        return Resource.create(plan.attributes, plan.schema_url)
    return Resource(plan.attributes, plan.schema_url)


def build_spans(plan: BatchPlan) -> list[ReadableSpan]:
    """Run the plan through the SDK; the finished spans, in the order they ended."""
    exporter = InMemorySpanExporter()
    providers = []
    for resource_index, limits in plan.providers:
        provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=_resource(plan.resources[resource_index]),
            span_limits=limits,
            shutdown_on_exit=False,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)

    def tracer(provider: int, scope: int) -> trace.Tracer:
        spec = plan.scopes[scope]
        return providers[provider].get_tracer(
            spec.name, spec.version, spec.schema_url, spec.attributes
        )

    tracers = {
        (provider, scope): tracer(provider, scope)
        for provider in range(len(providers))
        for scope in range(len(plan.scopes))
    }
    for span_plan in plan.spans:
        if span_plan.fresh_tracer:
            span_tracer = tracer(span_plan.provider, span_plan.scope)
        else:
            span_tracer = tracers[span_plan.provider, span_plan.scope]
        _run_span(span_tracer, span_plan)
    return list(exporter.get_finished_spans())


def _run_span(tracer: trace.Tracer, plan: SpanPlan) -> None:
    parent_span = None
    context = None
    if isinstance(plan.parent, SpanContext):
        context = trace.set_span_in_context(NonRecordingSpan(plan.parent))
    elif plan.parent == "local":
        parent_span = tracer.start_span("parent", kind=SpanKind.SERVER)
        context = trace.set_span_in_context(parent_span)
    span = tracer.start_span(
        plan.name,
        context=context,
        kind=plan.kind,
        attributes=plan.attributes,
        links=[Link(link_context, attributes) for link_context, attributes in plan.links],
        start_time=plan.start_time,
    )
    for name, attributes, timestamp in plan.events:
        span.add_event(name, attributes, timestamp)
    for link_context, attributes in plan.added_links:
        span.add_link(link_context, attributes)
    if plan.status is not None:
        code, description = plan.status
        span.set_status(Status(code, description))
    span.end(plan.end_time)
    if parent_span is not None:
        parent_span.end()


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=batch_plans(), data=st.data())
def test_same_as_the_sdk_encoder(plan: BatchPlan, data: st.DataObject) -> None:
    spans = build_spans(plan)
    assert_same_as_sdk(spans)
    # Any order: grouping is by first appearance of the resource, then of the scope.
    assert_same_as_sdk(data.draw(st.permutations(spans)))


@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_every_attribute_value_as_the_sdk(value: Any) -> None:
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("s", attributes={"key": value}).end()
    assert_same_as_sdk(exporter.get_finished_spans())


# -- examples -----------------------------------------------------------------------------------


def _finished(
    provider: TracerProvider,
) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("delivery.worker", "1.0"), exporter


DELIVERY_ATTRIBUTES: dict[str, Any] = {
    "cpevents.attempt": 1,
    "cpevents.delivery_id": "dlv_01J000000000000000000000",
    "cpevents.event_id": "evt_01J0000000000000000000000",
    "cpevents.webhook_id": "wh_01J00000000000000000000",
    "http.response.status_code": 200,
}


def test_a_delivery_span() -> None:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "cpevents-delivery"}), shutdown_on_exit=False
    )
    tracer, exporter = _finished(provider)
    parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    with tracer.start_as_current_span(
        "POST webhook",
        context=trace.set_span_in_context(NonRecordingSpan(parent)),
        kind=SpanKind.CLIENT,
        attributes=DELIVERY_ATTRIBUTES,
    ):
        pass
    spans = exporter.get_finished_spans()
    request = ExportTraceServiceRequest.FromString(assert_same_as_sdk(spans))

    # What it says, read back, not only "as the SDK says".
    (resource_spans,) = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "cpevents-delivery"
    assert resource["telemetry.sdk.language"] == "python"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("delivery.worker", "1.0")
    (span,) = scope_spans.spans
    assert span.name == "POST webhook"
    assert span.kind == PB2Span.SpanKind.SPAN_KIND_CLIENT
    assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert span.parent_span_id == bytes.fromhex("b7ad6b7169203331")
    assert span.span_id == spans[0].context.span_id.to_bytes(8, "big")
    assert span.flags == 0x300  # has-is-remote, is-remote; no trace flags (as the SDK)
    assert span.start_time_unix_nano == spans[0].start_time
    assert span.end_time_unix_nano == spans[0].end_time
    assert span.HasField("status")
    assert span.status.code == 0
    attributes = {kv.key: kv.value for kv in span.attributes}
    assert list(attributes) == list(DELIVERY_ATTRIBUTES)
    assert attributes["cpevents.attempt"].int_value == 1
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["cpevents.event_id"].string_value == "evt_01J0000000000000000000000"


def test_an_empty_batch() -> None:
    assert assert_same_as_sdk([]) == b""


def test_a_batch_span_with_many_links_and_every_limit() -> None:
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        span_limits=SpanLimits(max_links=100, max_link_attributes=1, max_events=2),
        shutdown_on_exit=False,
    )
    tracer, exporter = _finished(provider)
    links = [
        Link(
            SpanContext(
                trace_id=i + 1,
                span_id=2**64 - 1 - i,
                is_remote=i % 2 == 0,
                trace_flags=TraceFlags(1),
                trace_state=TraceState([("k", str(i))]),
            ),
            {"i": i, "j": -i},
        )
        for i in range(128)
    ]
    span = tracer.start_span("batch", links=links, kind=SpanKind.CONSUMER)
    for i in range(3):
        span.add_event(f"e{i}", {"n": -(2**63) + i})
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end()
    (finished,) = exporter.get_finished_spans()
    (decoded,) = (
        ExportTraceServiceRequest.FromString(assert_same_as_sdk([finished]))
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )
    assert (decoded.dropped_links_count, decoded.dropped_events_count) == (28, 1)
    assert len(decoded.links) == 100
    assert {link.dropped_attributes_count for link in decoded.links} == {1}
    assert {link.flags for link in decoded.links} == {0x100, 0x300}
    assert all(link.trace_state == "" for link in decoded.links)  # the SDK leaves it out
    assert (decoded.status.code, decoded.status.message) == (2, "boom")


def test_equal_resources_and_scopes_are_one_group_as_in_the_sdk() -> None:
    exporter = InMemorySpanExporter()
    for order in ({"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "b": 3}):
        provider = TracerProvider(resource=Resource(order), shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for attributes in (None, {"x": 1}, None):
            provider.get_tracer("t", "1", attributes=attributes).start_span("s").end()
    spans = list(exporter.get_finished_spans())
    request = ExportTraceServiceRequest.FromString(assert_same_as_sdk(spans))
    assert [len(rs.scope_spans) for rs in request.resource_spans] == [2, 2]
    # The group's resource is the first of the equal ones, attribute order included.
    assert [kv.key for kv in request.resource_spans[0].resource.attributes] == ["a", "b"]


class Color(enum.IntEnum):
    RED = 3


class Name(str):
    pass


def test_hand_built_spans_as_the_sdk() -> None:
    """ReadableSpans made by hand: no scope, no status, no times, raw (uncleaned) attributes
    of subclasses, bytearrays, mappings with non-string keys, events and links with dicts."""
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    raw: dict[str, Any] = {
        "enum": Color.RED,
        "name": Name("x"),
        "bytearray": bytearray(b"ab"),
        "list": [1, "a", None, [2.5, b"\x00"]],
        "mapping": {1: "one", "": 2, None: {"deep": True}},
        "nan": math.nan,
        "": "empty key",
    }
    spans = [
        ReadableSpan(
            "hand",
            context=context,
            attributes=raw,
            events=[Event("e", raw, timestamp=5), Event("no attributes", None, timestamp=6)],
            links=[Link(context, raw), Link(context)],
            status=None,  # type: ignore[arg-type]
        ),
        ReadableSpan("", context=context, instrumentation_scope=InstrumentationScope("s")),
        ReadableSpan("", context=context, parent=context, start_time=1, end_time=2),
    ]
    assert_same_as_sdk(spans)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=_build_name)
@pytest.mark.parametrize(
    "value",
    [
        2**63,
        -(2**63) - 1,
        [1, 2**64],
        {"nested": 2**70},
        "lone surrogate \ud800",
        object(),
        {1, 2},
    ],
    ids=["int64-max+1", "int64-min-1", "in-array", "in-kvlist", "surrogate", "object", "set"],
)
def test_what_the_sdk_would_drop_is_unsupported(implementation: ModuleType, value: object) -> None:
    """We raise UnsupportedSpan, for the caller to encode the batch with the SDK, which drops
    that attribute (logging why) and keeps the rest."""
    attributes: Mapping[str, Any] = {"bad": value, "good": 1}
    span = ReadableSpan("s", context=SpanContext(1, 2, False), attributes=attributes)
    with pytest.raises(implementation.UnsupportedSpan):
        implementation.encode_spans([span])
    (kept,) = sdk_encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].attributes
    assert kept.key == "good"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=_build_name)
def test_a_key_that_is_not_a_string_is_unsupported(implementation: ModuleType) -> None:
    span = ReadableSpan("s", context=SpanContext(1, 2, False), attributes={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(implementation.UnsupportedSpan, match="key"):
        implementation.encode_spans([span])
    assert not sdk_encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].attributes


def test_unsupported_is_a_value_error() -> None:
    assert issubclass(UnsupportedSpan, ValueError)
