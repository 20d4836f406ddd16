"""Trace spans of delivery attempts (only when ``plumbing.tracing`` is on).

Each attempt is a client span, child of the trace context in the task record's headers (the
event record's own ``traceparent``, which the router passes on: the span that published the
event; for an event published without one, the router's batch span); the endpoint receives the
span's ``traceparent`` (and ``tracestate``). Retries carry the task's headers unchanged (only
the ``retry-*`` ones are replaced), so every attempt of a delivery, first or retried, is a span
of the same trace, with the same parent.

The span is a lean one (``plumbing.lean_spans``): the same span the SDK would make, at a
fraction of its CPU, as there is one per attempt.

Attributes: ``cpevents.attempt`` (1 for the first), ``cpevents.delivery_id``,
``cpevents.event_id``, ``cpevents.webhook_id``, and ``http.response.status_code`` when the
endpoint answered. An attempt that did not deliver has an ERROR status described as
``<verdict>: <reason>`` (``retry: HTTP 503``, ``gone: HTTP 410``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.lean_spans import LeanSpan

if TYPE_CHECKING:  # lanes import this module
    from delivery.lanes import Job

__all__ = ["end_attempt_span", "start_attempt_span"]


def start_attempt_span(job: Job, headers: dict[str, str]) -> LeanSpan | None:
    """The attempt's span, started now (None when tracing is off); its ``traceparent`` (and
    ``tracestate``) are added to ``headers``, the request's.

    Not a coroutine around the POST: every await of the HTTP call would resume through its
    frame (see ``Lanes._run``)."""
    tracer = tracing.lean_tracer()
    if tracer is None:
        return None
    span = tracer.start("POST webhook", tracing.SpanKind.CLIENT, job.message.headers())
    headers[tracing.TRACEPARENT] = span.traceparent
    if span.trace_state:
        headers[tracing.TRACESTATE] = span.trace_state.to_header()
    return span


def end_attempt_span(span: LeanSpan, job: Job, result: AttemptResult | None) -> None:
    """End the attempt's span with what it got (``result`` None: the POST raised)."""
    tracer = tracing.lean_tracer()
    if tracer is None:  # tracing turned off meanwhile: nowhere to send it
        return
    # Only what a constant or the span's status would not say: the method is the span's name;
    # a failed attempt's verdict is in its status's description.
    error = None
    status = 0
    if result is not None:
        status = result.status
        outcome = result.outcome
        if outcome.verdict != "delivered":
            error = f"{outcome.verdict}: {outcome.reason}"[:200]
    tracer.finish(span, _attributes(job, status), error)


def _attributes(job: Job, status: int) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {"cpevents.attempt": job.state.attempts + 1}
    task, webhook = job.task, job.webhook
    if task is not None:
        attributes["cpevents.delivery_id"] = task.id
        attributes["cpevents.event_id"] = task.event.id
    if webhook is not None:
        attributes["cpevents.webhook_id"] = webhook.id
    if status:  # 0: no answer (refused, timed out), so no status code
        attributes["http.response.status_code"] = status
    return attributes
