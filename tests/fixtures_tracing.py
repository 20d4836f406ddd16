"""A span exporter for tests and benches that keeps what it is given."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class KeepSpans(SpanExporter):
    """Keeps the spans it is given, lean spans as they are (``exports_lean_spans``: as our
    OTLP exporter gets them from ``plumbing.tracing``)."""

    exports_lean_spans = True

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.exported = threading.Event()  # set by the first export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        self.exported.set()
        return SpanExportResult.SUCCESS
