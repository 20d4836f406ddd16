"""OpenTelemetry traces, configured only by the standard ``OTEL_*`` variables.

Tracing is on when the environment names an exporter: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), or ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``;
``none`` turns it off, as does ``OTEL_SDK_DISABLED=true``). The exporter is OTLP over HTTP with
protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``, the only protocol installed); the
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
- router ``route`` (consumer), one per event, child of the event's context, whose context goes
  into each of the event's delivery tasks: one trace runs from the POST to the endpoint;
- delivery ``POST webhook`` (client), one per attempt, child of the task's context; the endpoint
  receives its ``traceparent``. Retries read the same task headers, so every attempt of a
  delivery is a sibling in the one trace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "SpanKind",
    "StatusCode",
    "configure",
    "context_from_headers",
    "enabled",
    "exporter_from_env",
    "headers_of",
    "http_headers_of",
    "shutdown",
    "start_span",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEADERS = (TRACEPARENT, TRACESTATE)

#: True once :func:`configure` installed an exporter. Hot paths read it before anything else.
enabled = False

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


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
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* as the SDK reads


def configure(
    service_name: str,
    exporter: SpanExporter | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Turn tracing on for this process if the environment (``env``, default ``os.environ``)
    names an exporter, or ``exporter`` is given (tests: spans exported as they end). Returns
    whether tracing is on. ``service_name`` applies unless ``OTEL_SERVICE_NAME`` is set.

    Raises ValueError for an exporter or protocol that is not installed: a service must not
    start believing it traces when it cannot.
    """
    global enabled, _tracer, _provider
    env = os.environ if env is None else env
    if exporter is None:
        kind = exporter_from_env(env)
        if kind is None:
            return enabled
        exporter = _exporter(kind, env)
        processor: Any = BatchSpanProcessor(exporter)
    else:
        processor = SimpleSpanProcessor(exporter)
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_*
    provider.add_span_processor(processor)
    old = _provider
    # Our own provider rather than the global one: the global can be set once per process, and
    # tests configure several in turn.
    _provider, _tracer = provider, provider.get_tracer("cpevents")
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


def _carrier(headers: HeaderPairs | Mapping[str, Any] | None) -> dict[str, str]:
    """The trace headers among ``headers`` (Kafka pairs of bytes, or an HTTP mapping)."""
    found: dict[str, str] = {}
    if headers is None:
        return found
    if isinstance(headers, Mapping):
        for name in _HEADERS:
            value = headers.get(name)
            if value is not None:
                found[name] = value.decode() if isinstance(value, bytes) else str(value)
        return found
    for name, value in headers:
        if name in _HEADERS and value is not None:
            found[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return found


def context_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Context | None:
    """The trace context in ``headers`` (None if they carry no ``traceparent``)."""
    carrier = _carrier(headers)
    if TRACEPARENT not in carrier:
        return None
    return _propagator.extract(carrier)


def start_span(
    name: str,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A started span, child of ``parent`` (else of the current span, else a root). End it."""
    tracer = _tracer
    if tracer is None:
        return trace.INVALID_SPAN
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def headers_of(span: Span) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying ``span``'s context (none for an invalid span)."""
    return [(name, value.encode()) for name, value in http_headers_of(span).items()]


def http_headers_of(span: Span) -> dict[str, str]:
    """HTTP headers carrying ``span``'s context (``traceparent``, ``tracestate`` if any)."""
    carrier: dict[str, str] = {}
    if span.get_span_context().is_valid:
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier
