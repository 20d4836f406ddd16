"""Our OTLP/HTTP exporter, against a real HTTP receiver on loopback: what it posts is what the
SDK's exporter would post, it is what ``configure`` installs for ``OTEL_EXPORTER_OTLP_*``, and
it keeps the SDK's behaviour where our encoder steps aside or the request is too large."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plumbing.otlp_exporter as otlp_exporter
from plumbing import tracing
from plumbing.otlp_encoding import UnsupportedSpan
from plumbing.otlp_exporter import OtlpHttpSpanExporter


class Receiver:
    """An OTLP/HTTP endpoint on loopback keeping each request's body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def requests(self) -> list[ExportTraceServiceRequest]:
        return [ExportTraceServiceRequest.FromString(body) for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def finished_spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cpevents", "1.0")
    with tracer.start_as_current_span("POST /v1/events", attributes={"n": 3}) as parent:
        parent.add_event("accepted", {"ids": ["evt_1", "evt_2"]})
        tracer.start_span("POST webhook", attributes={"cpevents.attempt": 2}).end()
    return list(memory.get_finished_spans())


def test_it_posts_what_the_sdks_exporter_would(receiver: Receiver) -> None:
    spans = finished_spans()
    exporter = OtlpHttpSpanExporter(endpoint=receiver.url)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert receiver.requests() == [sdk_encode(spans)]


def test_a_batch_our_encoder_declines_goes_through_the_sdks(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def decline(spans: Any) -> bytes:
        raise UnsupportedSpan("a value of an unknown type")

    monkeypatch.setattr(otlp_exporter, "encode_spans", decline)
    spans = finished_spans()
    assert OtlpHttpSpanExporter(endpoint=receiver.url).export(spans) is SpanExportResult.SUCCESS
    assert receiver.requests() == [sdk_encode(spans)]


def test_a_request_over_the_size_limit_is_dropped_not_sent(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = OtlpHttpSpanExporter(endpoint=receiver.url, max_request_size=100)
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert receiver.bodies == []
    assert "over the limit of 100" in caplog.text


def test_an_endpoint_that_refuses_is_a_failed_export() -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    exporter = OtlpHttpSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE


def test_configure_installs_it_for_otlp_endpoints(receiver: Receiver) -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "svc"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert tracing.configure("test", env=env)
    try:
        tracing.start_span("route", tracing.NEW_TRACE).end()
    finally:
        tracing.shutdown()  # exports what is pending
    [request] = receiver.requests()
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "svc"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["route"]
