"""Trace spans of delivery attempts (only when ``plumbing.tracing`` is on).

Each attempt is a client span, child of the trace context in the task record's headers (put
there by the router, from the event's own ``traceparent``); the endpoint receives the span's
``traceparent`` (and ``tracestate``). Retries carry the task's headers unchanged (only the
``retry-*`` ones are replaced), so every attempt of a delivery, first or retried, is a span of
the same trace, under the router's ``route`` span.

Attributes: ``cpevents.attempt`` (1 for the first), ``cpevents.delivery_id``,
``cpevents.event_id``, ``cpevents.webhook_id``, and ``http.response.status_code`` when the
endpoint answered. An attempt that did not deliver has an ERROR status described as
``<verdict>: <reason>`` (``retry: HTTP 503``, ``gone: HTTP 410``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from delivery.transport import AttemptResult
from plumbing import tracing

if TYPE_CHECKING:  # lanes import this module
    from delivery.lanes import Job

__all__ = ["traced_post"]

Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[AttemptResult]]


async def traced_post(
    post: Post, job: Job, url: str, body: bytes, headers: Mapping[str, str]
) -> AttemptResult:
    """``post(url, body, headers)`` inside a span whose ``traceparent`` the endpoint gets."""
    parent = tracing.context_from_headers(job.message.headers())
    task, webhook = job.task, job.webhook
    # Only what a constant or the span's status would not say: each attribute costs some 4 µs
    # of CPU (made, then encoded for export) in a span of 50. The method is the span's name;
    # a failed attempt's verdict is in its status's description.
    attributes: dict[str, str | int] = {"cpevents.attempt": job.state.attempts + 1}
    if task is not None:
        attributes["cpevents.delivery_id"] = task.id
        attributes["cpevents.event_id"] = task.event.id
    if webhook is not None:
        attributes["cpevents.webhook_id"] = webhook.id
    span = tracing.start_span("POST webhook", parent, tracing.SpanKind.CLIENT, attributes)
    try:
        result = await post(url, body, {**headers, **tracing.http_headers_of(span)})
        if result.status:  # 0: no answer (refused, timed out), so no status code
            span.set_attribute("http.response.status_code", result.status)
        outcome = result.outcome
        if outcome.verdict != "delivered":
            span.set_status(tracing.StatusCode.ERROR, f"{outcome.verdict}: {outcome.reason}"[:200])
        return result
    finally:
        span.end()
