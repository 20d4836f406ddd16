"""Trace spans of delivery attempts (only when ``plumbing.tracing`` is on).

Each attempt is a client span, child of the trace context in the task record's headers (put
there by the router, from the event's own ``traceparent``); the endpoint receives the span's
``traceparent`` (and ``tracestate``). Retries carry the task's headers unchanged (only the
``retry-*`` ones are replaced), so every attempt of a delivery, first or retried, is a span of
the same trace, under the router's ``route`` span.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.kafka.produce import message_headers

if TYPE_CHECKING:  # lanes import this module
    from delivery.lanes import Job

__all__ = ["traced_post"]

Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[AttemptResult]]


async def traced_post(
    post: Post, job: Job, url: str, body: bytes, headers: Mapping[str, str]
) -> AttemptResult:
    """``post(url, body, headers)`` inside a span whose ``traceparent`` the endpoint gets."""
    message = job.message
    parent = tracing.context_from_headers(message_headers(message)) if message.headers() else None
    task, webhook = job.task, job.webhook
    attributes: dict[str, str | int] = {
        "http.request.method": "POST",
        "cpevents.attempt": job.state.attempts + 1,
    }
    if task is not None:
        attributes["cpevents.delivery_id"] = task.id
        attributes["cpevents.event_id"] = task.event.id
    if webhook is not None:
        attributes["cpevents.webhook_id"] = webhook.id
    span = tracing.start_span("POST webhook", parent, tracing.SpanKind.CLIENT, attributes)
    try:
        result = await post(url, body, {**headers, **tracing.http_headers_of(span)})
        span.set_attribute("http.response.status_code", result.status)
        span.set_attribute("cpevents.outcome", str(result.outcome.verdict))
        if result.outcome.verdict != "delivered":
            span.set_status(tracing.StatusCode.ERROR, result.outcome.reason[:200])
        return result
    finally:
        span.end()
