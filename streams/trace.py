"""The router's trace spans (only when ``plumbing.tracing`` is on): one ``route`` span per batch.

Each delivery task carries its event record's own ``traceparent``/``tracestate`` unchanged, so
a delivery attempt's span is a child of the span that published the event (the gateway's
``POST /v1/events``, a ``KafkaBus.publish``, or any producer's), and one trace runs from the
caller to the endpoint. The router's work is one ``route`` span per batch, a consumer span with
a link to each distinct event context in the batch (up to ``OTEL_SPAN_LINK_COUNT_LIMIT``, the
SDK's limit on links per span, 128 by default), attributes ``messaging.batch.message_count``,
``cpevents.tasks`` and ``cpevents.dead_lettered``.

Why a batch span: a span costs the SDK some 12 µs to make and several more to export, and the
router spends about 18 µs on an event; a span per event cost it four fifths of its throughput
(issue 16's budget for tracing at a 100 % sampler is 15 %). A batch of up to 1000 events pays
for one span and its links, and passing a header on costs nearly nothing.

An event published without a ``traceparent`` has no trace to continue: its tasks carry the
batch span's context, so its delivery attempts are children of the ``route`` span that made
them (and are sampled as it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plumbing import tracing

__all__ = ["BatchTrace"]

Headers = tuple[tuple[str, bytes], ...]


class BatchTrace:
    """The ``route`` span of one batch of event records and the trace headers of its tasks.

    Make it before routing the batch, take :meth:`headers` for each record's tasks, then
    :meth:`end` it with what the batch produced.
    """

    def __init__(self, messages: Sequence[Any]) -> None:
        self._headers: list[Headers] = [tracing.trace_header_pairs(m.headers) for m in messages]
        links: list[tracing.Link] = []
        limit = tracing.max_links()
        seen: set[Headers] = set()
        for pairs in self._headers:
            if not pairs or pairs in seen:
                continue  # one link per context: a request's events share the gateway's span
            if limit is not None and len(links) >= limit:
                break
            seen.add(pairs)
            link = tracing.link_from_headers(pairs)
            if link is not None:
                links.append(link)
        self._span = tracing.start_span(
            "route",
            tracing.NEW_TRACE,
            tracing.SpanKind.CONSUMER,
            {"messaging.system": "kafka", "messaging.batch.message_count": len(messages)},
            links,
        )
        self._own = tuple(tracing.headers_of(self._span))

    def headers(self, index: int) -> Headers:
        """The trace headers for the tasks of the batch's record ``index``: the record's own,
        else the batch span's."""
        return self._headers[index] or self._own

    def end(self, tasks: int, dead_lettered: int) -> None:
        """End the span, with the number of tasks and dead letters the batch produced."""
        self._span.set_attributes(
            {"cpevents.tasks": tasks, "cpevents.dead_lettered": dead_lettered}
        )
        self._span.end()
