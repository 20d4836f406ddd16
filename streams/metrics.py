"""The router's Prometheus metrics and trace spans, served on the Faust web port (``/metrics``).

Counted once per batch (the router already works in batches of up to 1000 events): the cost
per event is nil. Traces, when ``plumbing.tracing`` is on, are one ``route`` span per event,
child of the event record's ``traceparent`` (a root when it has none), whose context goes into
each of the event's delivery tasks, so one trace runs from the producer to the endpoint. One
span per event rather than a batch span with links: a batch span would start a trace of its
own, and the endpoint's ``traceparent`` would then not lead back to the request that published
the event.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from plumbing import tracing
from plumbing.kafka.produce import Record
from plumbing.metrics import counter, histogram

__all__ = ["RouterMetrics", "router_metrics", "traced_tasks"]


class RouterMetrics:
    """The process's router counters (see :func:`router_metrics`)."""

    def __init__(self) -> None:
        self.consumed = counter(
            "cpevents_router_events_consumed_total", "Event records the router consumed"
        )
        self.tasks = counter(
            "cpevents_router_tasks_produced_total", "Delivery tasks the router wrote"
        )
        self.dead_lettered = counter(
            "cpevents_router_events_dead_lettered_total",
            "Events the router dead-lettered to events.dlt (undecodable, or a task too large)",
        )
        self.unmatched = counter(
            "cpevents_router_events_unmatched_total",
            "Events that matched no active webhook (no task written)",
        )
        self.batch_duration = histogram(
            "cpevents_router_batch_duration_seconds",
            "Time to route a batch and have Kafka acknowledge its outputs",
        )
        # The same family as the delivery worker's (delivery.metrics.dead_letters_counter).
        self.dead_letters = counter(
            "cpevents_dead_letters_total",
            "Records written to a dead-letter topic, by the component that wrote them",
            ("source",),
        ).labels("router")

    def batch(
        self,
        events: int,
        starts: Sequence[int],
        outputs: int,
        tasks: int,
        dead_lettered: int,
        seconds: float,
    ) -> None:
        """One batch of ``events`` routed: ``starts[i]`` is the index of event i's first
        output among ``outputs``; ``tasks`` written, ``dead_lettered`` events parked."""
        ends = [*starts[1:], outputs]
        unmatched = sum(1 for start, end in zip(starts, ends, strict=True) if start == end)
        self.consumed.inc(events)
        if tasks:
            self.tasks.inc(tasks)
        if dead_lettered:
            self.dead_lettered.inc(dead_lettered)
            self.dead_letters.inc(dead_lettered)
        if unmatched:
            self.unmatched.inc(unmatched)
        self.batch_duration.observe(seconds)


@functools.cache
def router_metrics() -> RouterMetrics:
    """The process's router metrics (made once)."""
    return RouterMetrics()


def traced_tasks(message: Any, tasks: Sequence[Any], topic: str) -> list[Record]:
    """The task records of one event (a Faust message), each carrying the context of a
    ``route`` span, child of the event's trace context. Only called with tracing on."""
    # Every attribute given at the start: one cleaning pass, no lock and no call per
    # attribute, as set_attribute has.
    span = tracing.start_span(
        "route",
        tracing.context_from_headers(message.headers),  # Kafka pairs or a mapping
        tracing.SpanKind.CONSUMER,
        {
            "messaging.system": "kafka",
            "messaging.source.name": str(message.topic),
            "messaging.kafka.partition": int(message.partition),
            "messaging.kafka.offset": int(message.offset),
            "cpevents.tasks": len(tasks),
        },
    )
    headers = tracing.headers_of(span)
    span.end()  # nothing in between can fail: no try
    return [Record(topic, task.key, task.value, headers) for task in tasks]
