"""plumbing.tracing: on only when OTEL_* names an exporter; W3C trace context in and out of
Kafka and HTTP headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from plumbing import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("test", exporter=exporter, env={})
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_off_unless_the_environment_names_an_exporter() -> None:
    assert tracing.exporter_from_env({}) is None
    assert tracing.exporter_from_env({"OTEL_SERVICE_NAME": "x"}) is None
    assert tracing.exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert tracing.exporter_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c"}) == "otlp"
    assert tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    off = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert tracing.exporter_from_env(off) is None
    assert tracing.configure("svc", env={}) is False
    assert tracing.enabled is False


def test_an_unsupported_protocol_is_refused() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(ValueError, match="http/protobuf"):
        tracing.configure("svc", env=env)
    assert tracing.enabled is False


def test_without_tracing_spans_are_invalid_and_carry_no_header() -> None:
    span = tracing.start_span("x")
    assert not span.get_span_context().is_valid
    assert tracing.headers_of(span) == []


def test_context_travels_through_kafka_headers(spans: InMemorySpanExporter) -> None:
    assert tracing.enabled
    parent = tracing.start_span("publish", kind=tracing.SpanKind.PRODUCER)
    headers = tracing.headers_of(parent)
    parent.end()
    assert [name for name, _ in headers] == ["traceparent"]
    context = tracing.context_from_headers([("retry-attempt", b"1"), *headers])
    child = tracing.start_span("route", context, tracing.SpanKind.CONSUMER)
    child.end()
    publish, route = spans.get_finished_spans()
    assert route.context.trace_id == publish.context.trace_id
    assert route.parent is not None and route.parent.span_id == publish.context.span_id
    assert publish.resource.attributes["service.name"] == "test"


def test_an_incoming_http_traceparent_is_continued(spans: InMemorySpanExporter) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = tracing.context_from_headers({"traceparent": incoming, "tracestate": "k=v"})
    span = tracing.start_span("POST /v1/events", context, tracing.SpanKind.SERVER)
    out = tracing.http_headers_of(span)
    span.end()
    assert out["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert out["tracestate"] == "k=v"


def test_headers_without_traceparent_give_no_context() -> None:
    assert tracing.context_from_headers([("x", b"y")]) is None
    assert tracing.context_from_headers(None) is None
    assert tracing.context_from_headers({}) is None


TRACEPARENTS = [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # invalid trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # invalid span id
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case: invalid
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # version 00: no more
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",  # a later version
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "  00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "",
]


@pytest.mark.parametrize("traceparent", TRACEPARENTS)
@pytest.mark.parametrize("tracestate", [None, "k=v,a=b", "not a tracestate"])
def test_headers_are_read_as_the_w3c_propagator_reads_them(
    traceparent: str, tracestate: str | None
) -> None:
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    expected = trace.get_current_span(
        TraceContextTextMapPropagator().extract(carrier)
    ).get_span_context()
    kafka = [(name, value.encode()) for name, value in carrier.items()]
    for headers in (carrier, kafka):
        context = tracing.context_from_headers(headers)
        assert context is not None
        found = trace.get_current_span(context).get_span_context()
        assert found == expected
        assert found.is_remote == expected.is_remote
        assert found.trace_flags == expected.trace_flags
        assert found.trace_state == expected.trace_state


def test_headers_are_written_as_the_w3c_propagator_writes_them(
    spans: InMemorySpanExporter,
) -> None:
    for incoming in ({"traceparent": TRACEPARENTS[0], "tracestate": "k=v"}, {}):
        parent = tracing.context_from_headers(incoming)
        span = tracing.start_span("x", parent)
        expected: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(expected, trace.set_span_in_context(span))
        assert tracing.http_headers_of(span) == expected
        assert tracing.headers_of(span) == [(k, v.encode()) for k, v in expected.items()]
        span.end()


def test_an_unsampled_caller_is_followed_but_its_context_still_travels(
    spans: InMemorySpanExporter,
) -> None:
    context = tracing.context_from_headers([("traceparent", TRACEPARENTS[1].encode())])
    span = tracing.start_span("route", context, tracing.SpanKind.CONSUMER, {"a": 1})
    headers = tracing.http_headers_of(span)
    span.end()
    assert not span.is_recording() and spans.get_finished_spans() == ()
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert headers["traceparent"].endswith("-00")


def test_the_resource_keeps_the_sdks_attributes_and_equality(
    spans: InMemorySpanExporter,
) -> None:
    span = tracing.start_span("x")
    span.end()
    [finished] = spans.get_finished_spans()
    resource = finished.resource
    same = Resource(resource.attributes, resource.schema_url)
    assert resource == same and hash(resource) == hash(same)
    assert resource.attributes["service.name"] == "test"
    assert resource.attributes["telemetry.sdk.language"] == "python"


def test_otel_resource_attributes_and_service_name_are_the_sdks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")
    exporter = InMemorySpanExporter()
    tracing.configure("cpevents-router", exporter=exporter, env={"OTEL_SERVICE_NAME": "edge"})
    try:
        tracing.start_span("x").end()
    finally:
        tracing.shutdown()
    [finished] = exporter.get_finished_spans()
    assert finished.resource.attributes["service.name"] == "edge"
    assert finished.resource.attributes["deployment.environment"] == "prod"
