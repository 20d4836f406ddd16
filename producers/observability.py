"""Metrics and trace spans of the producing side: the gateway's ``POST /v1/events`` and
``KafkaBus.publish``.

Metrics: ``cpevents_gateway_events_accepted_total`` and
``cpevents_gateway_events_refused_total{reason}`` (refused requests, by the problem type's
slug: a bounded set),
``cpevents_bus_events_published_total``; request durations by route and status come from
``plumbing.metrics.HttpMetrics`` (service ``gateway``).

Traces (only when ``plumbing.tracing`` is on): one span per request or publish whose context
goes into the ``traceparent`` header of every event record written, continuing the caller's
context (the request's ``traceparent`` header; for ``KafkaBus``, the caller's current span).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from opentelemetry import context as otel_context

from plumbing import tracing
from plumbing.kafka.produce import Delivered, Record
from plumbing.metrics import HttpMetrics, counter
from producers.gateway.problems import Problem

__all__ = [
    "ProducerMetrics",
    "counting_refusals",
    "producer_metrics",
    "traced_publish",
    "traced_request",
]

Send = Callable[[Sequence[Record]], Awaitable[list[Delivered]]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


class ProducerMetrics:
    """The process's producing-side counters (see :func:`producer_metrics`)."""

    def __init__(self) -> None:
        self.accepted = counter(
            "cpevents_gateway_events_accepted_total",
            "Events the gateway accepted (written to Kafka, answered 202)",
        )
        self._refused = counter(
            "cpevents_gateway_events_refused_total",
            "Requests to POST /v1/events refused, by reason (the problem type): nothing of a "
            "refused request is written, so each counts once",
            ("reason",),
        )
        self._refused_by: dict[str, Any] = {}
        self.published = counter(
            "cpevents_bus_events_published_total", "Events KafkaBus.publish/publish_many wrote"
        )
        self.http = HttpMetrics("gateway")

    def refused(self, reason: str, count: int = 1) -> None:
        """Count ``count`` events refused for ``reason`` (a problem slug)."""
        child = self._refused_by.get(reason)
        if child is None:
            child = self._refused_by[reason] = self._refused.labels(reason)
        child.inc(count)


@functools.cache
def producer_metrics() -> ProducerMetrics:
    """The process's producing-side metrics (made once)."""
    return ProducerMetrics()


def counting_refusals(handler: Handler, metrics: ProducerMetrics) -> Handler:
    """``handler`` (``POST /v1/events``) with each refusal counted by its problem type. A
    refused request counts once: its events may not even be readable."""

    async def handle(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Problem as problem:
            metrics.refused(problem.slug)
            raise
        except web.HTTPException as exc:
            if exc.status >= 400:
                metrics.refused(exc.reason.lower().replace(" ", "-"))
            raise

    return handle


async def _traced(send: Send, records: Sequence[Record], span: Any) -> list[Delivered]:
    try:
        headers = tracing.headers_of(span)
        traced = [r._replace(headers=[*r.headers, *headers]) for r in records]
        return await send(traced)
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(tracing.StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        span.end()


async def traced_request(
    send: Send, records: Sequence[Record], request_headers: Mapping[str, str], event_ids: list[str]
) -> list[Delivered]:
    """``send(records)`` inside a server span continuing the request's ``traceparent``, each
    record carrying the span's context. Only called with tracing on."""
    parent = tracing.context_from_headers(request_headers)
    # Given at the start: one cleaning pass and no lock per attribute, as set_attribute has.
    attributes: dict[str, Any] = {"http.request.method": "POST", "http.route": "/v1/events"}
    attributes["cpevents.events"] = len(event_ids)
    if len(event_ids) == 1:
        attributes["cpevents.event_id"] = event_ids[0]
    span = tracing.start_span("POST /v1/events", parent, tracing.SpanKind.SERVER, attributes)
    return await _traced(send, records, span)


async def traced_publish(send: Send, records: Sequence[Record]) -> list[Delivered]:
    """``send(records)`` inside a producer span, child of the caller's current span (if any).
    Only called with tracing on."""
    topic = records[0].topic if records else ""
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "cpevents.events": len(records),
    }
    span = tracing.start_span(
        f"publish {topic}", otel_context.get_current(), tracing.SpanKind.PRODUCER, attributes
    )
    return await _traced(send, records, span)
