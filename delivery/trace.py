"""Trace spans of delivery attempts (only when ``plumbing.tracing`` is on).

Each attempt is a client span, child of the trace context in the task record's headers (the
event record's own ``traceparent``, which the router passes on: the span that published the
event; for an event published without one, the router's batch span); the endpoint receives the
span's ``traceparent`` (and ``tracestate``). Retries carry the task's headers unchanged (only
the ``retry-*`` ones are replaced), so every attempt of a delivery, first or retried, is a span
of the same trace, with the same parent.

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
    span = tracing.start_span("POST webhook", parent, tracing.SpanKind.CLIENT)
    try:
        result = await post(url, body, {**headers, **tracing.http_headers_of(span)})
    except BaseException:
        span.set_attributes(_attributes(job, 0))
        span.end()
        raise
    # Only what a constant or the span's status would not say: the method is the span's name;
    # a failed attempt's verdict is in its status's description. Set in one call at the end:
    # given at the start, the SDK cleans every attribute twice (sampler, then span).
    span.set_attributes(_attributes(job, result.status))
    outcome = result.outcome
    if outcome.verdict != "delivered":
        span.set_status(tracing.StatusCode.ERROR, f"{outcome.verdict}: {outcome.reason}"[:200])
    span.end()
    return result


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
