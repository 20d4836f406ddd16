"""Trace spans of delivery attempts (only when ``plumbing.tracing`` is on).

Each attempt is a client span, child of the trace context in the task record's headers (the
event record's own ``traceparent``, which the router passes on: the span that published the
event; for an event published without one, the router's batch span); the endpoint receives the
span's ``traceparent`` (and ``tracestate``). Retries carry the task's headers unchanged (only
the ``retry-*`` ones are replaced), so every attempt of a delivery, first or retried, is a span
of the same trace, with the same parent.

The span is a lean one (``plumbing.lean_spans``): the same span the SDK would make, at a
fraction of its CPU, as there is one per attempt. The worker makes the spans of a batch of
records as it reads them, and finishes a batch of them with the attempts' other outputs: made
and finished one by one between HTTP calls, the same work cost it two to three times the CPU
(docs/performance.md, Observability).

Attributes: ``cpevents.attempt`` (1 for the first), ``cpevents.delivery_id``,
``cpevents.event_id``, ``cpevents.webhook_id``, and ``http.response.status_code`` when the
endpoint answered. An attempt that did not deliver has an ERROR status described as
``<verdict>: <reason>`` (``retry: HTTP 503``, ``gone: HTTP 410``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from confluent_kafka import Message

from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.lean_spans import TRACEPARENT, TRACESTATE, LeanSpan, LeanTracer
from plumbing.tracing import SpanKind

if TYPE_CHECKING:  # lanes import this module
    from delivery.lanes import Job

__all__ = [
    "end_attempt_span",
    "finish_attempt_spans",
    "prepare_attempt_spans",
    "start_attempt_span",
]

_NAME: Final = "POST webhook"
_CLIENT: Final = SpanKind.CLIENT
_MAX_DESCRIPTION: Final = 200


def prepare_attempt_spans(messages: list[Message]) -> list[LeanSpan | None]:
    """The span of each task record's attempt, made as the records are read (None for each
    when tracing is off): in one pass for a batch, a fraction of its CPU one by one among the
    HTTP calls (caches). :func:`start_attempt_span` starts one when its attempt does."""
    tracer = tracing.lean_tracer()
    if tracer is None:
        return [None] * len(messages)
    return [tracer.start(_NAME, _CLIENT, message.headers()) for message in messages]


def start_attempt_span(job: Job, headers: dict[str, str]) -> LeanSpan | None:
    """The attempt's span, started now: the one made as its record was read, else one made
    now (None when tracing is off). Its ``traceparent`` (and ``tracestate``) are added to
    ``headers``, the request's.

    Not a coroutine around the POST: every await of the HTTP call would resume through its
    frame (see ``Lanes._run``)."""
    span = job.span
    if span is None:
        tracer = tracing.lean_tracer()
        if tracer is None:
            return None
        span = job.span = tracer.start(_NAME, _CLIENT, job.message.headers())
    span.start_time = time.time_ns()
    headers[TRACEPARENT] = span.traceparent
    trace_state = span.trace_state
    if trace_state:
        headers[TRACESTATE] = trace_state.to_header()
    return span


def end_attempt_span(span: LeanSpan, job: Job, result: AttemptResult | None) -> None:
    """End the attempt's span now with what it got (``result`` None: the POST raised)."""
    job.span = None
    tracer = tracing.lean_tracer()
    if tracer is not None:  # else tracing was turned off meanwhile: nowhere to send it
        _finish(tracer, span, job, result)


def finish_attempt_spans(attempted: list[tuple[Job, AttemptResult]]) -> None:
    """Give each attempt's span (``job.span``, its end time set as the answer came) its
    outcome and send it, in one pass with the attempts' other outputs: done between HTTP calls,
    one by one, the same work costs several times the CPU (caches)."""
    tracer = tracing.lean_tracer()
    for job, result in attempted:
        span = job.span
        if span is not None:
            job.span = None
            if tracer is not None and span.end_time:  # else never started: tracing was off
                _finish(tracer, span, job, result)


def _finish(tracer: LeanTracer, span: LeanSpan, job: Job, result: AttemptResult | None) -> None:
    # Only what a constant or the span's status would not say: the method is the span's name;
    # a failed attempt's verdict is in its status's description.
    error: str | None = None
    status = 0
    if result is not None:
        status = result.status
        outcome = result.outcome
        if outcome.verdict != "delivered":
            error = f"{outcome.verdict}: {outcome.reason}"[:_MAX_DESCRIPTION]
    attributes: dict[str, str | int] = {"cpevents.attempt": job.state.attempts + 1}
    task = job.task
    if task is not None:
        attributes["cpevents.delivery_id"] = task.id
        attributes["cpevents.event_id"] = task.event.id
    webhook = job.webhook
    if webhook is not None:
        attributes["cpevents.webhook_id"] = webhook.id
    if status:  # 0: no answer (refused, timed out), so no status code
        attributes["http.response.status_code"] = status
    tracer.finish(span, attributes, error)
