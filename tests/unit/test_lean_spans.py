"""plumbing.lean_spans against the reference, the SDK's own tracer and span.

For every parent a task can carry (none, sampled or not, W3C random flag, tracestate, another
traceparent version) and every sampler ``OTEL_TRACES_SAMPLER`` names (plus one of another kind,
asked for each span), a lean span must be the span the SDK's tracer makes with the same ids:
the same context, parent, trace flags and state, attributes, status, resource and scope, the
same decision to export it, and the same ``traceparent`` for the endpoint. Its OTLP bytes are
the SDK encoder's bytes for it, and it reaches the exporter through the real batch processor.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState

from plumbing import tracing
from plumbing.lean_spans import LeanSpan, LeanTracer, QueueEmitter
from plumbing.otlp_encoding import encode_spans
from tests.fixtures_tracing import KeepSpans


class CountingIds(IdGenerator):
    """Ids in sequence, so that the SDK's tracer and the lean one draw the same."""

    def __init__(self, random_trace_ids: bool) -> None:
        self.next = 0x1000
        self.random_trace_ids = random_trace_ids

    def generate_span_id(self) -> int:
        self.next += 1
        return self.next

    def generate_trace_id(self) -> int:
        self.next += 1
        return (0xABCDEF << 80) | (self.next * 0x9E3779B97F4A7C15 % (1 << 64))

    def is_trace_id_random(self) -> bool:
        return self.random_trace_ids


class Tagging(Sampler):
    """A sampler of another kind: samples odd trace ids, adds an attribute, edits tracestate."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        decision = Decision.RECORD_AND_SAMPLE if trace_id & 1 else Decision.DROP
        return SamplingResult(decision, {"sampler.name": "tagging"}, TraceState([("tag", "1")]))

    def get_description(self) -> str:
        return "Tagging"


SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
    "traceidratio": TraceIdRatioBased(0.5),
    "parentbased_traceidratio": ParentBasedTraceIdRatio(0.5),
    "another kind": Tagging(),
}

TRACE_IDS = st.integers(1, (1 << 128) - 1)
SPAN_IDS = st.integers(1, (1 << 64) - 1)
TRACESTATES = st.sampled_from([None, "vendor=abc", "a=1,b=2", "x" * 600, "not a tracestate"])


@st.composite
def parent_headers(draw: st.DrawFn) -> list[tuple[str, bytes]] | None:
    """A task record's headers: no traceparent, or one of version 00 (any trace flags), or of
    a later version (read by the SDK's propagator), with or without a tracestate."""
    kind = draw(st.sampled_from(["none", "v00", "v00", "v00", "later version", "invalid"]))
    if kind == "none":
        return None
    trace_id, span_id = draw(TRACE_IDS), draw(SPAN_IDS)
    flags = draw(st.sampled_from([0x00, 0x01, 0x02, 0x03]))
    value = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    if kind == "later version":
        value = f"01-{trace_id:032x}-{span_id:016x}-{flags:02x}-whatever"
    elif kind == "invalid":
        value = f"00-{0:032x}-{span_id:016x}-01"
    headers = [("retry-attempt", b"1"), ("traceparent", value.encode())]
    state = draw(TRACESTATES)
    if state is not None:
        headers.append(("tracestate", state.encode()))
    return headers


ATTRIBUTES = st.dictionaries(
    st.sampled_from(["cpevents.attempt", "cpevents.delivery_id", "http.response.status_code"]),
    st.one_of(st.integers(0, 999), st.text(max_size=12)),
    max_size=3,
)


def providers(sampler: Sampler, random_ids: bool, limits: SpanLimits) -> tuple[Any, Any]:
    """The SDK's tracer and a lean tracer over two providers alike, each exporting to memory."""
    made = []
    for _ in range(2):
        memory = InMemorySpanExporter()
        provider = TracerProvider(
            sampler=sampler,
            resource=Resource.create({"service.name": "cpevents-delivery"}),
            id_generator=CountingIds(random_ids),
            span_limits=limits,
            shutdown_on_exit=False,
        )
        processor = SimpleSpanProcessor(tracing.ReadableSpans(memory))
        provider.add_span_processor(processor)
        made.append((provider, processor, memory))
    (sdk_provider, _, sdk_memory), (provider, processor, lean_memory) = made
    emit: Any = processor.on_end  # as tracing._emitter gives it for a SimpleSpanProcessor
    lean = LeanTracer(provider, limits, emit, "cpevents")
    return (sdk_provider.get_tracer("cpevents"), sdk_memory), (lean, lean_memory)


def sdk_span_for(
    tracer: Any,
    headers: list[tuple[str, bytes]] | None,
    attributes: Mapping[str, Any],
    error: str | None,
) -> Any:
    """What the delivery worker made with the SDK: a client span, child of the headers'
    context (the current one, none here, without a traceparent)."""
    span = tracer.start_span(
        "POST webhook", context=tracing.context_from_headers(headers), kind=SpanKind.CLIENT
    )
    sent = tracing.http_headers_of(span)
    span.set_attributes(attributes)
    if error is not None:
        span.set_status(StatusCode.ERROR, error)
    span.end()
    return span, sent


def facts(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.context, span.parent
    return {
        "name": span.name,
        "kind": span.kind,
        "context": (
            context.trace_id,
            context.span_id,
            context.is_remote,
            int(context.trace_flags),
            context.trace_state.to_header(),
        ),
        "parent": None
        if parent is None
        else (
            parent.trace_id,
            parent.span_id,
            parent.is_remote,
            int(parent.trace_flags),
            parent.trace_state.to_header(),
        ),
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "events": span.events,
        "links": span.links,
    }


@settings(max_examples=300, deadline=None)
@given(
    sampler=st.sampled_from(sorted(SAMPLERS)),
    random_ids=st.booleans(),
    headers=parent_headers(),
    attributes=ATTRIBUTES,
    error=st.sampled_from([None, "retry: HTTP 503", "gone: HTTP 410"]),
    limits=st.sampled_from(
        [SpanLimits(), SpanLimits(max_span_attributes=2), SpanLimits(max_attribute_length=3)]
    ),
)
def test_the_same_span_as_the_sdks_tracer_makes(
    sampler: str,
    random_ids: bool,
    headers: list[tuple[str, bytes]] | None,
    attributes: dict[str, Any],
    error: str | None,
    limits: SpanLimits,
) -> None:
    (sdk_tracer, sdk_memory), (lean, lean_memory) = providers(SAMPLERS[sampler], random_ids, limits)
    sdk_span, sdk_headers = sdk_span_for(sdk_tracer, headers, attributes, error)

    span = lean.start("POST webhook", SpanKind.CLIENT, headers)
    # The endpoint receives the same context, sampled or not.
    sent = {"traceparent": span.traceparent}
    if span.trace_state:
        sent["tracestate"] = span.trace_state.to_header()
    assert sent == sdk_headers
    lean.finish(span, dict(attributes), error)

    exported = lean_memory.get_finished_spans()
    expected = sdk_memory.get_finished_spans()
    assert len(exported) == len(expected)  # exported exactly when the SDK's would be
    assert [facts(s) for s in exported] == [facts(s) for s in expected]
    assert span.readable().context == sdk_span.get_span_context()
    for readable in exported:
        assert isinstance(readable, ReadableSpan)  # ReadableSpans converted it
        start, end = readable.start_time, readable.end_time
        assert sdk_span.start_time is not None and start is not None and end is not None
        assert sdk_span.start_time <= start <= end


@settings(max_examples=200, deadline=None)
@given(
    headers=parent_headers(),
    attributes=ATTRIBUTES,
    error=st.sampled_from([None, "retry: connection refused"]),
    batch=st.integers(1, 4),
)
def test_its_otlp_bytes_are_the_sdk_encoders_for_it(
    headers: list[tuple[str, bytes]] | None,
    attributes: dict[str, Any],
    error: str | None,
    batch: int,
) -> None:
    (_, _), (lean, _) = providers(ALWAYS_ON, True, SpanLimits())
    spans = []
    for _ in range(batch):
        span = lean.start("POST webhook", SpanKind.CLIENT, headers)
        lean.finish(span, dict(attributes), error)
        spans.append(span)
    expected = sdk_encode_spans([s.readable() for s in spans]).SerializePartialToString()
    assert encode_spans(spans) == expected
    # Mixed with the SDK's spans of the same resource and scope: one group, in order.
    provider = TracerProvider(resource=spans[0].resource, shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("cpevents").start_span("route").end()
    mixed: list[Any] = [*memory.get_finished_spans(), *spans]
    readable = [s.readable() if isinstance(s, LeanSpan) else s for s in mixed]
    assert encode_spans(mixed) == sdk_encode_spans(readable).SerializePartialToString()


class NeverSet(threading.Event):
    """An event that is never set: the batch processor's worker sleeps on."""

    def set(self) -> None:
        pass


def test_a_full_batch_wakes_the_exporter_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exporter's timer is a minute away: only a full batch can wake it within the wait.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    kept = KeepSpans()
    tracing.configure("test", exporter=kept, env={}, batch=True)
    try:
        tracer = tracing.lean_tracer()
        assert tracer is not None
        for _ in range(tracing.EXPORT_BATCH_SIZE - 1):
            tracer.finish(tracer.start("POST webhook", SpanKind.CLIENT, None), {}, None)
        assert not kept.exported.wait(0.2)  # one short of a batch: nothing exported
        tracer.finish(tracer.start("POST webhook", SpanKind.CLIENT, None), {}, None)
        assert kept.exported.wait(30)
        assert len(kept.spans) == tracing.EXPORT_BATCH_SIZE
    finally:
        tracing.shutdown()


@pytest.mark.parametrize(
    ("env", "batch", "queue"),
    [
        ({}, tracing.EXPORT_BATCH_SIZE, tracing.EXPORT_QUEUE_SIZE),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100"}, 100, 2048),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "1000"}, 512, 1000),
    ],
)
def test_export_batches_are_ours_unless_the_environment_sets_them(
    env: dict[str, str], batch: int, queue: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the SDK reads os.environ
    tracing.configure("test", exporter=KeepSpans(), env=env, batch=True)
    try:
        tracer = tracing.lean_tracer()
        assert tracer is not None and isinstance(tracer.emit, QueueEmitter)
        assert (tracer.emit.batch_size, tracer.emit.limit) == (batch, queue)
    finally:
        tracing.shutdown()


def test_a_full_queue_drops_the_span_as_the_sdk_does(caplog: pytest.LogCaptureFixture) -> None:
    exported = KeepSpans()
    processor = BatchSpanProcessor(exported, max_queue_size=4, max_export_batch_size=4)
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    emitter = tracing._emitter(processor)
    assert isinstance(emitter, QueueEmitter)
    lean = LeanTracer(provider, SpanLimits(), emitter, "cpevents")
    # No export while the spans arrive: the queue fills.
    processor._batch_processor._worker_awaken = NeverSet()
    spans = [lean.start("POST webhook", SpanKind.CLIENT, None) for _ in range(6)]
    for span in spans:
        lean.finish(span, {}, None)
    assert "Queue full, dropping Span" in caplog.text  # the SDK's own emit took over
    processor._batch_processor._worker_awaken = threading.Event()
    processor.shutdown()  # type: ignore[no-untyped-call]
    assert len(exported.spans) == 4  # what the queue held
    emitter(spans[0])  # after shutdown: the SDK's emit, which ignores it
    assert len(exported.spans) == 4


def test_an_unsampled_span_is_not_exported_but_its_context_travels() -> None:
    memory = InMemorySpanExporter()
    tracing.configure("test", exporter=memory, env={})
    try:
        tracer = tracing.lean_tracer()
        assert tracer is not None
        unsampled = [("traceparent", f"00-{'ab' * 16}-{'cd' * 8}-00".encode())]
        span = tracer.start("POST webhook", SpanKind.CLIENT, unsampled)
        assert span.traceparent.startswith(f"00-{'ab' * 16}-")
        assert span.traceparent.endswith("-00")
        tracer.finish(span, {}, "retry: HTTP 503")
        assert memory.get_finished_spans() == ()
    finally:
        tracing.shutdown()


def test_off_there_is_no_lean_tracer() -> None:
    tracing.shutdown()
    assert tracing.lean_tracer() is None


def test_readable_gives_the_sdks_status_objects() -> None:
    (_, _), (lean, _) = providers(ALWAYS_ON, True, SpanLimits())
    span = lean.start("POST webhook", SpanKind.CLIENT, None)
    lean.finish(span, {}, None)
    assert span.readable().status.status_code is StatusCode.UNSET
    failed = lean.start("POST webhook", SpanKind.CLIENT, None)
    lean.finish(failed, {}, "gone: HTTP 410")
    status: Status = failed.readable().status
    assert (status.status_code, status.description) == (StatusCode.ERROR, "gone: HTTP 410")
