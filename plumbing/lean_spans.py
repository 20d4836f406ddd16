"""Lean spans: a span per delivery attempt without the SDK's ``Span`` object.

Why: the delivery worker makes a span for every attempt, and the SDK's tracer and ``Span``
(a context to build for the sampler, its ``SamplingResult``, the span's lock and
``BoundedAttributes``, the checks in every ``set_*``, the ``ReadableSpan`` copy at the end)
cost more CPU than the budget for tracing's whole cost on the worker (issue 16: a 100 %
sampler within 15 % of its throughput). A :class:`LeanSpan` records the same facts in plain
fields, and goes to the same ``BatchSpanProcessor`` and exporter as every other span.

What stays the SDK's: the configured sampler (``OTEL_TRACES_SAMPLER``: its own samplers decide
here by the same rule, from the parent's sampled flag or the trace id; any other sampler is
asked, as the SDK's tracer asks it), id generator, span limits, resource, processor and
exporter. What differs is only what costs: no ``Context``, no lock, ids kept as ints, and
attributes given once, at the end.

Our OTLP encoder (``plumbing.otlp_encoding``) writes a lean span directly; any other exporter
(console, in-memory in tests) gets the SDK's ``ReadableSpan`` of it (:meth:`LeanSpan.readable`).
Tests check that both give the same span the SDK's tracer makes.

Compiled with mypyc (setup.py), with the encoder: its fields are read natively there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "LeanSpan",
    "LeanTracer",
    "QueueEmitter",
    "parse_trace_context",
    "readable_spans",
    "trace_headers",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

# The W3C traceparent of version 00, the only one we write and nearly all we read: parsed here
# (one regex match), anything else goes to the SDK's propagator (other versions, whitespace).
# The propagator costs several times more per hop (getter, regex through re's cache, a copy of
# the context), and every span of ours is made from a parsed header and injected into one.
_TRACEPARENT_00: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACESTATE_MAX: Final = 512  # the propagator's limit: a longer tracestate is dropped
_propagator: Final = TraceContextTextMapPropagator()

_SAMPLED: Final = 0x01  # TraceFlags.SAMPLED
_RANDOM_TRACE_ID: Final = 0x02  # TraceFlags.RANDOM_TRACE_ID
_TRACE_ID_LIMIT: Final = (1 << 64) - 1  # TraceIdRatioBased.TRACE_ID_LIMIT
_FLAGS_HEX: Final = tuple(f"{flags:02x}" for flags in range(256))


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def parse_trace_context(
    parent: object, state: object
) -> tuple[int, int, int, TraceState | None] | None:
    """Trace id, span id, trace flags and trace state of a ``traceparent`` (and
    ``tracestate``) header value, bytes or str; None when it is not a valid one."""
    parsed = _parse(parent, state)
    return None if parsed is None else parsed[:4]


def _parse(parent: object, state: object) -> tuple[int, int, int, TraceState | None, str] | None:
    """What :func:`parse_trace_context` gives, and the trace id as lowercase hex."""
    traceparent = _text(parent)
    match = _TRACEPARENT_00.fullmatch(traceparent)
    if match is None:  # not the plain version 00: the SDK decides
        carrier = {TRACEPARENT: traceparent}
        if state is not None:
            carrier[TRACESTATE] = _text(state)
        context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        if not context.is_valid:
            return None
        return (
            context.trace_id,
            context.span_id,
            int(context.trace_flags),
            context.trace_state,
            f"{context.trace_id:032x}",
        )
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:  # all zeros: invalid, as the propagator has it
        return None
    trace_state = None
    if state is not None:
        header = _text(state)
        if len(header) <= _TRACESTATE_MAX:
            trace_state = TraceState.from_header([header])
    return trace_id, span_id, int(match[3], 16), trace_state, match[1]


def trace_headers(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> tuple[Any, Any]:
    """The ``traceparent`` and ``tracestate`` values among ``headers`` (Kafka pairs, or an HTTP
    mapping), as given (bytes or str) or None."""
    if not headers:
        return None, None
    if isinstance(headers, Mapping):
        return headers.get(TRACEPARENT), headers.get(TRACESTATE)
    parent: Any = None
    state: Any = None
    for name, value in headers:
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    return parent, state


class LeanSpan:
    """A span of ours: what the SDK's ``ReadableSpan`` of it would hold, ids as ints."""

    name: str
    kind: SpanKind
    trace_id: int
    span_id: int
    trace_flags: int
    trace_state: TraceState | None
    parent_span_id: int  # 0: a root
    parent_trace_flags: int
    parent_trace_state: TraceState | None
    start_time: int
    end_time: int
    attributes: Any  # a dict, or the SDK's BoundedAttributes when span limits apply
    dropped_attributes: int
    status_code: StatusCode
    status_description: str | None
    resource: Resource
    instrumentation_scope: InstrumentationScope
    # Its W3C traceparent, written as it starts (the trace id's hex from the parent's header).
    traceparent: str

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        trace_flags: int,
        trace_state: TraceState | None,
        parent_span_id: int,
        parent_trace_flags: int,
        parent_trace_state: TraceState | None,
        start_time: int,
        attributes: Any,
        resource: Resource,
        instrumentation_scope: InstrumentationScope,
        trace_hex: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.trace_state = trace_state
        self.parent_span_id = parent_span_id
        self.parent_trace_flags = parent_trace_flags
        self.parent_trace_state = parent_trace_state
        self.start_time = start_time
        self.end_time = 0
        self.attributes = attributes
        self.dropped_attributes = 0
        self.status_code = StatusCode.UNSET
        self.status_description = None
        self.resource = resource
        self.instrumentation_scope = instrumentation_scope
        if trace_hex is None:
            trace_hex = f"{trace_id:032x}"
        self.traceparent = f"00-{trace_hex}-{span_id:016x}-{_FLAGS_HEX[trace_flags & 0xFF]}"

    @property
    def context(self) -> SpanContext:
        """The span's context, as the SDK's span would have it."""
        return SpanContext(
            self.trace_id, self.span_id, False, TraceFlags(self.trace_flags), self.trace_state
        )

    @property
    def parent(self) -> SpanContext | None:
        """The remote parent's context (None for a root)."""
        if not self.parent_span_id:
            return None
        return SpanContext(
            self.trace_id,
            self.parent_span_id,
            True,
            TraceFlags(self.parent_trace_flags),
            self.parent_trace_state,
        )

    def get_span_context(self) -> SpanContext:
        return self.context

    def readable(self) -> ReadableSpan:
        """The SDK's ``ReadableSpan`` of the same facts."""
        if self.status_code is StatusCode.UNSET:
            status = Status()
        else:
            status = Status(self.status_code, self.status_description)
        return ReadableSpan(
            name=self.name,
            context=self.context,
            parent=self.parent,
            resource=self.resource,
            attributes=self.attributes,
            kind=self.kind,
            status=status,
            start_time=self.start_time,
            end_time=self.end_time,
            instrumentation_scope=self.instrumentation_scope,
        )


def readable_spans(spans: Sequence[Any]) -> list[ReadableSpan]:
    """``spans`` with every lean span as the SDK's ``ReadableSpan``."""
    return [span.readable() if isinstance(span, LeanSpan) else span for span in spans]


class QueueEmitter:
    """Hands a sampled span to the SDK's ``BatchSpanProcessor`` as its ``emit`` does, without
    its Python-level call and ``getpid`` per span: appended to the processor's queue, its worker
    woken when a batch is full.

    The processor's own ``emit`` takes over when the queue is full (it counts and logs the
    drop) or the processor is shut down. A fork needs nothing: the processor keeps its queue
    object (cleared in the child) and replaces its worker and the event that wakes it, which
    is read here only when a batch is full."""

    def __init__(self, batch: Any, emit: Callable[[Any], None]) -> None:
        self.batch = batch  # the SDK's BatchProcessor
        self.emit = emit
        self.queue: Any = batch._queue  # a deque, bounded by OTEL_BSP_MAX_QUEUE_SIZE
        self.limit: int = batch._queue.maxlen
        self.batch_size: int = batch._max_export_batch_size

    def __call__(self, span: LeanSpan) -> None:
        queue = self.queue
        if len(queue) >= self.limit or self.batch._shutdown:
            self.emit(span)
            return
        queue.appendleft(span)  # the oldest at the right end, where the worker pops
        if len(queue) >= self.batch_size:
            awaken = self.batch._worker_awaken
            if not awaken.is_set():
                awaken.set()


# How a sampler decides for a lean span, read once from its type.
_ALWAYS: Final = 0
_NEVER: Final = 1
_RATIO: Final = 2
_ASK: Final = 3


class LeanTracer:
    """Starts and finishes lean spans as the provider's tracer would, ending them in
    ``emit`` (the provider's span processor's, for sampled spans only)."""

    def __init__(
        self,
        provider: TracerProvider,
        limits: SpanLimits,
        emit: Callable[[LeanSpan], None],
        scope_name: str,
    ) -> None:
        self.ids: Any = provider.id_generator
        self.resource: Resource = provider.resource
        # What provider.get_tracer(scope_name) has: the SDK makes an absent version and schema
        # URL "" (equal scopes are one group in an export).
        self.scope = InstrumentationScope(scope_name, "", "")
        self.sampler: Sampler = provider.sampler
        self.emit = emit
        self.max_attributes: int | None = limits.max_span_attributes
        self.max_attribute_length: int | None = limits.max_span_attribute_length
        # The SDK's own samplers, as OTEL_TRACES_SAMPLER makes them: parent-based ones follow a
        # remote parent's sampled flag (their remote delegates are the defaults).
        sampler = self.sampler
        self.follows_parent = (
            sampler is DEFAULT_ON
            or sampler is DEFAULT_OFF
            or type(sampler) is ParentBasedTraceIdRatio
        )
        self.bound = 0
        if sampler is ALWAYS_ON or sampler is DEFAULT_ON:
            self.root = _ALWAYS
        elif sampler is ALWAYS_OFF or sampler is DEFAULT_OFF:
            self.root = _NEVER
        elif type(sampler) is TraceIdRatioBased:
            self.root = _RATIO
            self.bound = sampler.bound
        else:  # ParentBasedTraceIdRatio's root sampler is private; any other sampler
            self.root = _ASK

    def start(
        self,
        name: str,
        kind: SpanKind,
        headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None,
    ) -> LeanSpan:
        """A span started now, child of the context in ``headers`` (Kafka record pairs or an
        HTTP mapping; a root without a valid one). An unsampled span is made too: its context
        is still passed on (:attr:`LeanSpan.traceparent`)."""
        parent_value, state = trace_headers(headers)
        parent = None if parent_value is None else _parse(parent_value, state)
        parent_span_id = parent_flags = 0
        parent_state: TraceState | None = None
        trace_hex: str | None = None
        if parent is None:
            trace_id: int = self.ids.generate_trace_id()
            random_id = bool(self.ids.is_trace_id_random())
        else:
            trace_id, parent_span_id, parent_flags, parent_state, trace_hex = parent
            random_id = bool(parent_flags & _RANDOM_TRACE_ID)
        sampler_attributes: Any = None
        trace_state = parent_state  # what the SDK's own samplers give
        if parent is not None and self.follows_parent:
            sampled = bool(parent_flags & _SAMPLED)
        elif self.root == _ALWAYS:
            sampled = True
        elif self.root == _NEVER:
            sampled = False
        elif self.root == _RATIO:
            sampled = trace_id & _TRACE_ID_LIMIT < self.bound
        else:  # asked, as the SDK's tracer asks it
            context = Context()
            if parent is not None:
                remote = SpanContext(
                    trace_id, parent_span_id, True, TraceFlags(parent_flags), parent_state
                )
                context = trace.set_span_in_context(NonRecordingSpan(remote), context)
            result = self.sampler.should_sample(context, trace_id, name, kind, None, ())
            sampled = result.decision is Decision.RECORD_AND_SAMPLE  # is_sampled(), untyped
            trace_state = result.trace_state
            sampler_attributes = result.attributes
        flags = (_SAMPLED if sampled else 0) | (_RANDOM_TRACE_ID if random_id else 0)
        return LeanSpan(
            name,
            kind,
            trace_id,
            self.ids.generate_span_id(),
            flags,
            trace_state,
            parent_span_id,
            parent_flags,
            parent_state,
            time.time_ns(),
            dict(sampler_attributes) if sampler_attributes else None,
            self.resource,
            self.scope,
            trace_hex,
        )

    def finish(self, span: LeanSpan, attributes: dict[str, Any], error: str | None) -> None:
        """End ``span`` with ``attributes`` (valid OTel attribute values, added to any its
        sampler gave) and, for a failed operation, an ERROR status described by ``error``;
        a sampled span goes to the processor. It ends now, unless its ``end_time`` was set
        (when the operation ended: the rest can wait for a batch)."""
        if not span.end_time:
            span.end_time = time.time_ns()
        given: Any = attributes
        if span.attributes:
            merged = dict(span.attributes)
            merged.update(attributes)
            given = merged
        limit = self.max_attributes
        if self.max_attribute_length is not None or (limit is not None and len(given) > limit):
            # As the SDK's span bounds them; under the limits, a plain dict is the same.
            bounded = BoundedAttributes(
                self.max_attributes,
                given,
                immutable=False,
                max_value_len=self.max_attribute_length,
            )
            span.dropped_attributes = bounded.dropped
            given = bounded
        span.attributes = given
        if error is not None:
            span.status_code = StatusCode.ERROR
            span.status_description = error
        if span.trace_flags & _SAMPLED:
            self.emit(span)
