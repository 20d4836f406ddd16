"""The router's Prometheus metrics, served on the Faust web port (``/metrics``).

Counted once per batch (the router already works in batches of up to 1000 events): the cost
per event is nil. Its trace spans are in ``streams.trace``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from plumbing.metrics import counter, histogram

__all__ = ["RouterMetrics", "router_metrics"]


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
