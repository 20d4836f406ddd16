"""OpenTelemetry traces, configured only by the standard ``OTEL_*`` variables.

Tracing is on when the environment names an exporter: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), or ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``;
``none`` turns it off, as does ``OTEL_SDK_DISABLED=true``). The exporter is OTLP over HTTP with
protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``, the only protocol installed; the SDK's
exporter with a leaner encoding, ``plumbing.otlp_exporter``); the
sampler (``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), the service name
(``OTEL_SERVICE_NAME``, else the component's) and resource attributes
(``OTEL_RESOURCE_ATTRIBUTES``) are the SDK's own reading of the environment.

Off, it costs nothing measurable: hot paths test the module flag :data:`enabled` (one
attribute read) and make no span, no context and no header.

The trace context travels as W3C ``traceparent``/``tracestate`` headers: in HTTP requests
(into the gateway, out of the delivery worker to the endpoint) and in Kafka record headers
(event records, delivery tasks, and their retries, which keep a task's headers). Spans:

- gateway ``POST /v1/events`` (server; continues the caller's ``traceparent``): its context goes
  into every event record of the request;
- ``KafkaBus.publish`` (producer; continues the caller's current span);
- router ``route`` (consumer), one per batch, linked to its events' contexts; each task carries
  its event's context unchanged (``streams.trace``): one trace runs from the POST to the
  endpoint;
- delivery ``POST webhook`` (client), one per attempt, child of the task's context; the endpoint
  receives its ``traceparent``. Retries read the same task headers, so every attempt of a
  delivery is a sibling in the one trace. It is a lean span (:func:`lean_tracer`,
  ``plumbing.lean_spans``): the same span, made without the SDK's ``Span`` object, whose cost
  per attempt was more than tracing's whole budget on the worker.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    Tracer,
)

from plumbing.lean_spans import (
    TRACEPARENT,
    TRACESTATE,
    LeanSpan,
    LeanTracer,
    QueueEmitter,
    parse_trace_context,
    readable_spans,
    trace_headers,
)

log = logging.getLogger(__name__)

__all__ = [
    "NEW_TRACE",
    "TRACEPARENT",
    "TRACESTATE",
    "Link",
    "SpanKind",
    "StatusCode",
    "configure",
    "context_from_headers",
    "enabled",
    "exporter_from_env",
    "headers_of",
    "http_headers_of",
    "lean_tracer",
    "link_from_headers",
    "max_links",
    "shutdown",
    "start_span",
    "trace_header_pairs",
]

#: The parent of a span that starts a trace of its own, whatever the current span.
NEW_TRACE = Context()

#: True once :func:`configure` installed an exporter. Hot paths read it before anything else.
enabled = False

_tracer: Tracer | None = None
_max_links: int | None = None
_provider: TracerProvider | None = None
_lean: LeanTracer | None = None


class _HashedOnce(Resource):
    """The SDK's resource, its hash computed once. The OTLP encoder groups spans by resource,
    hashing each span's, and ``Resource.__hash__`` is a sorted JSON dump of the attributes:
    some 3 µs a span, a tenth of the export's cost. A resource's attributes never change."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _knows_lean_spans(exporter: SpanExporter) -> bool:
    """Whether ``exporter`` exports a ``LeanSpan`` as it is (ours says so); any other is given
    the SDK's ``ReadableSpan`` for it."""
    return getattr(exporter, "exports_lean_spans", False) is True


def exporter_from_env(env: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for (``otlp``, ``console``), or None: tracing off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        first = named.split(",")[0].strip()
        return None if first == "none" else first
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def _exporter(kind: str, env: Mapping[str, str]) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind}: only otlp, console and none are supported")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed "
            "(point it at the collector's OTLP/HTTP port, usually 4318)"
        )
    # Imported only when used: it loads requests and protobuf.
    from plumbing.otlp_exporter import OtlpHttpSpanExporter

    # Endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* as the SDK reads them.
    return OtlpHttpSpanExporter()


#: Export batches and queue of our services when ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and
#: ``OTEL_BSP_MAX_QUEUE_SIZE`` are both unset (the SDK's defaults: 512 and 2048). Each export
#: costs the process a few milliseconds of CPU whatever its size (the HTTP request, the export
#: thread's wake-up and its turns at the GIL): on the delivery worker, a span per attempt,
#: batches of 2048 cost 5-6 µs less per attempt than 512 (docs/performance.md).
EXPORT_BATCH_SIZE = 2048
EXPORT_QUEUE_SIZE = 8192


def _batch_processor(exporter: SpanExporter, env: Mapping[str, str]) -> BatchSpanProcessor:
    if env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or env.get("OTEL_BSP_MAX_QUEUE_SIZE"):
        return BatchSpanProcessor(exporter)  # the SDK reads them, with its own defaults
    return BatchSpanProcessor(
        exporter, max_queue_size=EXPORT_QUEUE_SIZE, max_export_batch_size=EXPORT_BATCH_SIZE
    )


def configure(
    service_name: str,
    exporter: SpanExporter | None = None,
    env: Mapping[str, str] | None = None,
    *,
    batch: bool = False,
) -> bool:
    """Turn tracing on for this process if the environment (``env``, default ``os.environ``)
    names an exporter, or ``exporter`` is given (tests: spans exported as they end; benches:
    ``batch=True``, through the ``BatchSpanProcessor`` as in production). Returns
    whether tracing is on. ``service_name`` applies unless ``OTEL_SERVICE_NAME`` is set.

    Raises ValueError for an exporter or protocol that is not installed: a service must not
    start believing it traces when it cannot.
    """
    global enabled, _tracer, _provider, _max_links, _lean
    env = os.environ if env is None else env
    if exporter is None:
        kind = exporter_from_env(env)
        if kind is None:
            return enabled
        exporter = _exporter(kind, env)
        batch = True
    if not _knows_lean_spans(exporter):
        exporter = ReadableSpans(exporter)
    processor = _batch_processor(exporter, env) if batch else SimpleSpanProcessor(exporter)
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    resource = _HashedOnce(Resource.create(attributes))  # OTEL_RESOURCE_ATTRIBUTES too
    limits = SpanLimits()  # OTEL_SPAN_*_LIMIT, OTEL_LINK_*_LIMIT, as the provider would read them
    provider = TracerProvider(resource=resource, span_limits=limits)  # sampler: OTEL_TRACES_*
    provider.add_span_processor(processor)
    old = _provider
    # Our own provider rather than the global one: the global can be set once per process, and
    # tests configure several in turn.
    _provider, _tracer = provider, provider.get_tracer("cpevents")
    _lean = LeanTracer(provider, limits, _emitter(processor), "cpevents")
    _max_links = limits.max_links
    enabled = True
    if old is not None:
        old.shutdown()
    log.info("tracing on: %s", type(exporter).__name__)
    return True


def shutdown() -> None:
    """Export what is pending and turn tracing off."""
    global enabled, _tracer, _provider, _lean
    enabled = False
    provider, _provider, _tracer, _lean = _provider, None, None, None
    if provider is not None:
        provider.shutdown()


HeaderPairs = Iterable[tuple[str, Any]]


def trace_header_pairs(
    headers: HeaderPairs | Mapping[str, Any] | None,
) -> tuple[tuple[str, bytes], ...]:
    """The ``traceparent`` (and ``tracestate``) among ``headers`` as Kafka header pairs, ready to
    pass on unchanged; empty when there is no ``traceparent``."""
    parent, state = trace_headers(headers)
    if parent is None:
        return ()
    if state is None:
        return ((TRACEPARENT, _bytes(parent)),)
    return (TRACEPARENT, _bytes(parent)), (TRACESTATE, _bytes(state))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _span_context(parent: Any, state: Any) -> SpanContext | None:
    """The remote span context a ``traceparent`` (and ``tracestate``) value names; None when it
    is not a valid one."""
    fields = parse_trace_context(parent, state)
    if fields is None:
        return None
    trace_id, span_id, flags, trace_state = fields
    return SpanContext(trace_id, span_id, True, TraceFlags(flags), trace_state)


def context_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Context | None:
    """The trace context in ``headers`` (None if they carry no ``traceparent``)."""
    parent, state = trace_headers(headers)
    if parent is None:
        return None
    span_context = _span_context(parent, state)
    if span_context is None:
        return Context()  # an invalid traceparent: a new trace, as the propagator has it
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def link_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Link | None:
    """A link to the span whose context ``headers`` carry (None without a valid one)."""
    parent, state = trace_headers(headers)
    if parent is None:
        return None
    span_context = _span_context(parent, state)
    return None if span_context is None else Link(span_context)


def max_links() -> int | None:
    """The most links a span keeps (``OTEL_SPAN_LINK_COUNT_LIMIT``, default 128; None: no
    limit): a caller with more to give makes only that many."""
    return _max_links


def start_span(
    name: str,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
) -> Span:
    """A started span, child of ``parent`` (else of the current span, else a root; ``NEW_TRACE``
    for a root in any case), linked to ``links``. End it."""
    tracer = _tracer
    if tracer is None:
        return trace.INVALID_SPAN
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes, links=links)


# -- lean spans: a delivery attempt's span without the SDK's Span (plumbing.lean_spans) ---------


def lean_tracer() -> LeanTracer | None:
    """The tracer of lean spans (None when tracing is off): ``start`` one, put its
    ``traceparent`` into the outgoing request, ``finish`` it."""
    return _lean


class ReadableSpans(SpanExporter):
    """An exporter that knows only the SDK's spans, given each lean span as the SDK's
    ``ReadableSpan`` (ours exports lean spans as they are: ``exports_lean_spans``)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export(readable_spans(spans))

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def _emitter(processor: Any) -> Callable[[LeanSpan], None]:
    """Where a sampled lean span ends: straight into the batch processor's queue
    (``QueueEmitter``: its ``on_end`` only tests that the span is sampled, which the lean
    tracer did, and would build the span's context twice to do it); ``on_end`` for any other
    processor, or if a release of the SDK renames the internals that relies on."""
    if type(processor) is BatchSpanProcessor:
        batch = getattr(processor, "_batch_processor", None)
        emit = getattr(batch, "emit", None)
        queue = getattr(batch, "_queue", None)
        if (
            callable(emit)
            and isinstance(queue, collections.deque)
            and queue.maxlen is not None
            and isinstance(getattr(batch, "_max_export_batch_size", None), int)
            and isinstance(getattr(batch, "_worker_awaken", None), threading.Event)
            and isinstance(getattr(batch, "_shutdown", None), bool)
        ):
            return QueueEmitter(batch, emit)
        log.warning("tracing: the SDK's batch processor changed; lean spans go through on_end")
    chosen: Callable[[LeanSpan], None] = processor.on_end
    return chosen


def headers_of(span: Span) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying ``span``'s context (none for an invalid span)."""
    return [(name, value.encode()) for name, value in http_headers_of(span).items()]


def http_headers_of(span: Span) -> dict[str, str]:
    """HTTP headers carrying ``span``'s context (``traceparent``, ``tracestate`` if any)."""
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    # The propagator's own format (version 00), without its context round trip.
    carrier = {
        TRACEPARENT: f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    }
    if context.trace_state:
        carrier[TRACESTATE] = context.trace_state.to_header()
    return carrier
