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
  delivery is a sibling in the one trace.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
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
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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
    "link_from_headers",
    "max_links",
    "shutdown",
    "start_span",
    "trace_header_pairs",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The parent of a span that starts a trace of its own, whatever the current span.
NEW_TRACE = Context()

#: True once :func:`configure` installed an exporter. Hot paths read it before anything else.
enabled = False

_tracer: Tracer | None = None
_max_links: int | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


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
    global enabled, _tracer, _provider, _max_links
    env = os.environ if env is None else env
    if exporter is None:
        kind = exporter_from_env(env)
        if kind is None:
            return enabled
        exporter = _exporter(kind, env)
        processor: Any = BatchSpanProcessor(exporter)
    else:
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    resource = _HashedOnce(Resource.create(attributes))  # OTEL_RESOURCE_ATTRIBUTES too
    limits = SpanLimits()  # OTEL_SPAN_*_LIMIT, OTEL_LINK_*_LIMIT, as the provider would read them
    provider = TracerProvider(resource=resource, span_limits=limits)  # sampler: OTEL_TRACES_*
    provider.add_span_processor(processor)
    old = _provider
    # Our own provider rather than the global one: the global can be set once per process, and
    # tests configure several in turn.
    _provider, _tracer = provider, provider.get_tracer("cpevents")
    _max_links = limits.max_links
    enabled = True
    if old is not None:
        old.shutdown()
    log.info("tracing on: %s", type(exporter).__name__)
    return True


def shutdown() -> None:
    """Export what is pending and turn tracing off."""
    global enabled, _tracer, _provider
    enabled = False
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


HeaderPairs = Iterable[tuple[str, Any]]

# The W3C traceparent of version 00, the only one we write and nearly all we read: parsed here
# (one regex match), anything else goes to the SDK's propagator (other versions, whitespace).
# The propagator costs several times more per hop (getter, regex through re's cache, a copy of
# the context), and every span of ours is made from a parsed header and injected into one.
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACESTATE_MAX = 512


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _trace_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> tuple[Any, Any]:
    """The ``traceparent`` and ``tracestate`` values among ``headers`` (Kafka pairs, or an HTTP
    mapping), as given (bytes or str) or None."""
    if not headers:
        return None, None
    if isinstance(headers, Mapping):
        return headers.get(TRACEPARENT), headers.get(TRACESTATE)
    parent = state = None
    for name, value in headers:
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    return parent, state


def trace_header_pairs(
    headers: HeaderPairs | Mapping[str, Any] | None,
) -> tuple[tuple[str, bytes], ...]:
    """The ``traceparent`` (and ``tracestate``) among ``headers`` as Kafka header pairs, ready to
    pass on unchanged; empty when there is no ``traceparent``."""
    parent, state = _trace_headers(headers)
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
    traceparent = _text(parent)
    match = _TRACEPARENT_00.fullmatch(traceparent)
    if match is None:  # not the plain version 00: the SDK decides
        carrier = {TRACEPARENT: traceparent}
        if state is not None:
            carrier[TRACESTATE] = _text(state)
        context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        return context if context.is_valid else None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:  # all zeros: invalid, as the propagator has it
        return None
    trace_state = None if state is None else _trace_state(_text(state))
    return SpanContext(trace_id, span_id, True, TraceFlags(int(match[3], 16)), trace_state)


def context_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Context | None:
    """The trace context in ``headers`` (None if they carry no ``traceparent``)."""
    parent, state = _trace_headers(headers)
    if parent is None:
        return None
    span_context = _span_context(parent, state)
    if span_context is None:
        return Context()  # an invalid traceparent: a new trace, as the propagator has it
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def link_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Link | None:
    """A link to the span whose context ``headers`` carry (None without a valid one)."""
    parent, state = _trace_headers(headers)
    if parent is None:
        return None
    span_context = _span_context(parent, state)
    return None if span_context is None else Link(span_context)


def max_links() -> int | None:
    """The most links a span keeps (``OTEL_SPAN_LINK_COUNT_LIMIT``, default 128; None: no
    limit): a caller with more to give makes only that many."""
    return _max_links


def _trace_state(header: str) -> TraceState | None:
    # The propagator's limit: a longer tracestate is dropped, not truncated.
    return None if len(header) > _TRACESTATE_MAX else TraceState.from_header([header])


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
