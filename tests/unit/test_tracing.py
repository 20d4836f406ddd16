"""plumbing.tracing: on only when OTEL_* names an exporter; W3C trace context in and out of
Kafka and HTTP headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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
