"""A local OTLP/HTTP trace sink for the benches: accepts ``POST /v1/traces`` and counts spans.

    with OtlpSink() as sink:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        ...
        print(sink.spans())

It runs in a process of its own so that decoding the exports never takes CPU time from the
process a bench measures (tracing's cost is the exporter's work in that process, not the
collector's). Only the span count is kept: memory stays flat however long the bench runs.
"""

from __future__ import annotations

import multiprocessing
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType
from typing import Any

__all__ = ["OtlpSink"]


def _serve(sock: socket.socket, count: Synchronized[int]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    reply = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            export = ExportTraceServiceRequest()
            export.ParseFromString(body)
            spans = sum(
                len(scope.spans) for rs in export.resource_spans for scope in rs.scope_spans
            )
            with count.get_lock():
                count.value += spans
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would drown the bench's figures

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.serve_forever()


class OtlpSink:
    """An OTLP/HTTP (protobuf) trace receiver in a child process; ``spans()`` counts spans."""

    def __init__(self) -> None:
        self._count: Synchronized[int] = multiprocessing.Value("q", 0)
        # Bound and listening before the child starts: the endpoint answers as soon as we return.
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(self._sock, self._count), daemon=True
        )

    def spans(self) -> int:
        """Spans received so far."""
        return int(self._count.value)

    def __enter__(self) -> OtlpSink:
        self._process.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._process.terminate()
        self._process.join(5)
        self._sock.close()
