"""The delivery worker's Prometheus metrics.

Counted where the worker already works in batches: attempts are tallied during the pass that
writes the outputs of every attempt finished since the last one (``AttemptTally``, one counter
update per outcome and status class per pass, and one update per histogram bucket reached:
:class:`HistogramBatch`), and the live state (requests in flight, queued
tasks, the oldest one's age, open breakers) is read only when Prometheus scrapes.

``attempts`` outcomes: ``delivered``, ``retrying`` (back on the retry ladder), ``deferred``
(parked without an attempt: open breaker, hanging endpoint, webhook view behind),
``dead_lettered`` (exhausted, refused for good, unsigned or unreadable), ``disabled`` (410 Gone
disabled the webhook, or its webhook was deleted or inactive). Status classes: ``2xx``…
``5xx``, ``none`` without a response.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from delivery.outcome import Verdict
from plumbing.kafka.produce import Record
from plumbing.metrics import SLOW_BUCKETS, ScrapeGauge, counter, histogram, status_class
from plumbing.settings import Settings

if TYPE_CHECKING:
    from delivery.lanes import Job, Lanes
    from delivery.partitions import PartitionBook
    from delivery.transport import AttemptResult

__all__ = [
    "OUTCOMES",
    "STATUS_CLASSES",
    "AttemptTally",
    "DeliveryMetrics",
    "HistogramBatch",
    "dead_letters_counter",
    "delivery_metrics",
    "worker_metrics",
]

OUTCOMES = ("delivered", "retrying", "deferred", "dead_lettered", "disabled")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")


class DeliveryMetrics:
    """The process's delivery metrics, children bound once (see :func:`delivery_metrics`)."""

    def __init__(self) -> None:
        attempts = counter(
            "cpevents_delivery_attempts_total",
            "Delivery attempts by outcome and HTTP status class (none: no response)",
            ("outcome", "status_class"),
        )
        self._attempts = {
            (outcome, status): attempts.labels(outcome, status)
            for outcome in OUTCOMES
            for status in STATUS_CLASSES
        }
        self.per_webhook: Any = None  # a counter once enable_per_webhook() was called
        self.latency = histogram(
            "cpevents_delivery_latency_seconds",
            "From the event's timestamp to its delivery's 2xx, retries included",
            buckets=SLOW_BUCKETS,
        )
        self.lateness = histogram(
            "cpevents_delivery_retry_lateness_seconds",
            "How long after its due time a retry was attempted",
            buckets=SLOW_BUCKETS,
        )
        self.dead_letters = dead_letters_counter().labels("delivery")
        self.webhooks_disabled = counter(
            "cpevents_delivery_webhooks_disabled_total",
            "Webhooks the delivery worker disabled (410 Gone, or failing too long)",
        )
        self.in_flight = ScrapeGauge.make(
            "cpevents_delivery_requests_in_flight",
            "HTTP requests to endpoints in flight (lane runners posting)",
        )
        self.queued = ScrapeGauge.make(
            "cpevents_delivery_queued_tasks", "Tasks queued in endpoint lanes, waiting to be posted"
        )
        self.oldest = ScrapeGauge.make(
            "cpevents_delivery_oldest_queued_task_age_seconds",
            "Age of the oldest task waiting in an endpoint lane",
            combine="max",
        )
        self.admitted = ScrapeGauge.make(
            "cpevents_delivery_tasks_in_progress",
            "Tasks admitted from Kafka whose outputs are not all acknowledged yet",
        )
        self.breakers_open = ScrapeGauge.make(
            "cpevents_delivery_breakers_open",
            "Endpoints whose circuit breaker is open or half-open",
        )

    def enable_per_webhook(self) -> None:
        """Also count attempts per webhook id (``CPEVENTS_METRICS_PER_WEBHOOK``)."""
        self.per_webhook = counter(
            "cpevents_delivery_webhook_attempts_total",
            "Delivery attempts per webhook (CPEVENTS_METRICS_PER_WEBHOOK) by outcome",
            ("webhook_id", "outcome"),
        )

    def attempt(self, outcome: str, status: int = 0) -> Any:
        """The counter child of ``outcome`` with ``status``'s class (bound once)."""
        return self._attempts[(outcome, status_class(status))]

    def count(self, outcome: str, job: Job | None = None, status: int = 0) -> None:
        """Count one outcome outside the attempt pass (deferrals, drops: rarer paths)."""
        self._attempts[(outcome, status_class(status))].inc()
        if self.per_webhook is not None and job is not None and job.webhook is not None:
            self.per_webhook.labels(job.webhook.id, outcome).inc()

    def tally(
        self, dead_letter_topic: str, webhooks_topic: str, clock: Callable[[], float]
    ) -> AttemptTally:
        """A tally of settle passes (``add`` each attempt of a pass, then ``flush``); made once
        and reused, pass after pass."""
        return AttemptTally(self, dead_letter_topic, webhooks_topic, clock)

    def watch(self, lanes: Lanes, partitions: PartitionBook) -> None:
        """Read the live state of ``lanes`` and ``partitions`` at every scrape."""
        self.in_flight.add(lanes, _runners)
        self.queued.add(lanes, _queued)
        self.oldest.add(lanes, _oldest_age)
        self.breakers_open.add(lanes, _open_breakers)
        self.admitted.add(partitions, lambda book: float(book.in_flight))


def _lane_map(lanes: Lanes) -> dict[str, Any]:
    return dict(lanes._lanes)  # a copy: the loop may change it while a scrape reads


def _runners(lanes: Lanes) -> float:
    return float(sum(lane.runners for lane in _lane_map(lanes).values()))


def _queued(lanes: Lanes) -> float:
    return float(sum(len(lane.jobs) for lane in _lane_map(lanes).values()))


def _oldest_age(lanes: Lanes) -> float:
    now = time.monotonic()
    oldest = 0.0
    for lane in _lane_map(lanes).values():
        jobs = lane.jobs
        if jobs:
            try:
                oldest = max(oldest, now - jobs[0].queued_at)
            except IndexError:  # emptied meanwhile
                continue
    return oldest


def _open_breakers(lanes: Lanes) -> float:
    breakers = dict(lanes.breakers._breakers)
    return float(sum(1 for breaker in breakers.values() if breaker.opened_at is not None))


def dead_letters_counter() -> Any:
    """``cpevents_dead_letters_total{source}`` (the router counts its own too)."""
    return counter(
        "cpevents_dead_letters_total",
        "Records written to a dead-letter topic, by the component that wrote them",
        ("source",),
    )


@functools.cache
def delivery_metrics() -> DeliveryMetrics:
    """The process's delivery metrics (made once)."""
    return DeliveryMetrics()


def worker_metrics(settings: Settings, lanes: Lanes, partitions: PartitionBook) -> DeliveryMetrics:
    """The process's delivery metrics, watching one worker's ``lanes`` and ``partitions``
    (per webhook too if ``settings`` say so)."""
    metrics = delivery_metrics()
    if settings.metrics_per_webhook and metrics.per_webhook is None:
        metrics.enable_per_webhook()
    metrics.watch(lanes, partitions)
    return metrics


class AttemptTally:
    """Counts the attempts of one settle pass, written to the counters in :meth:`flush`."""

    __slots__ = (
        "_clock",
        "_counts",
        "_disabled",
        "_dlt",
        "_latency",
        "_lateness",
        "_metrics",
        "_now",
        "_webhooks",
    )

    def __init__(
        self,
        metrics: DeliveryMetrics,
        dead_letter_topic: str,
        webhooks_topic: str,
        clock: Callable[[], float],
    ) -> None:
        self._metrics = metrics
        self._dlt = dead_letter_topic
        self._webhooks = webhooks_topic
        self._disabled = 0
        self._counts: dict[tuple[str, int], int] = {}
        self._clock = clock
        self._now: float | None = None
        self._latency = HistogramBatch(metrics.latency)
        self._lateness = HistogramBatch(metrics.lateness)

    def add(self, job: Job, result: AttemptResult, records: Sequence[Record]) -> None:
        """One attempt made, and the records it left behind."""
        verdict = result.outcome.verdict
        status = result.status
        if verdict is Verdict.DELIVERED:
            outcome = "delivered"
            task = job.task
            if task is not None:
                # From the event's own time (the router's task creation when the event's time
                # is unknown): what a tenant sees, routing and every retry included.
                made = task.event.timestamp_micros or task.created_at_micros
                self._latency.observe(max(self._time() - made / 1e6, 0.0))
        else:
            outcome = "retrying"
            for record in records:  # a failure's records: a retry or a dead letter, a disable
                topic = record.topic
                if topic == self._dlt:
                    outcome = "disabled" if verdict is Verdict.GONE else "dead_lettered"
                elif topic == self._webhooks:
                    self._disabled += 1  # the webhook written back inactive
        due_ms = job.state.not_before_ms
        if due_ms and job.tier is not None:
            started = self._time() - result.duration_ms / 1000
            self._lateness.observe(max(started - due_ms / 1000, 0.0))
        key = (outcome, status // 100)
        self._counts[key] = self._counts.get(key, 0) + 1
        per_webhook = self._metrics.per_webhook
        if per_webhook is not None and job.webhook is not None:
            per_webhook.labels(job.webhook.id, outcome).inc()

    def _time(self) -> float:
        # One clock read per pass: the pass takes milliseconds, latencies are seconds.
        if self._now is None:
            self._now = self._clock()
        return self._now

    def flush(self) -> None:
        """Add the pass's counts to the counters."""
        attempt = self._metrics.attempt
        for (outcome, hundreds), count in self._counts.items():
            attempt(outcome, hundreds * 100).inc(count)
        self._counts.clear()
        self._now = None  # the next pass reads the clock afresh
        self._latency.flush()
        self._lateness.flush()
        if self._disabled:
            self._metrics.webhooks_disabled.inc(self._disabled)
            self._disabled = 0


class HistogramBatch:
    """Observations of one pass, added to ``histogram`` in :meth:`flush`: one update per
    bucket reached and one to the sum, instead of a locked update per observation.

    Reads prometheus_client's ``Histogram`` layout (``_upper_bounds``, ``_buckets``, ``_sum``,
    what its own ``observe`` updates); anything else (metrics off: a no-op) is observed value
    by value.
    """

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum", "_values")

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram
        bounds = getattr(histogram, "_upper_bounds", None)
        buckets = getattr(histogram, "_buckets", None)
        self._bounds: list[float] | None = (
            list(bounds) if bounds is not None and buckets is not None else None
        )
        self._counts: dict[int, int] = {}
        self._sum = 0.0
        self._values: list[float] = []

    def observe(self, value: float) -> None:
        """One observation (held until :meth:`flush`)."""
        bounds = self._bounds
        if bounds is None:
            self._values.append(value)
            return
        # The first bucket whose upper bound is >= value (the last bound is +Inf).
        index = bisect.bisect_left(bounds, value)
        self._counts[index] = self._counts.get(index, 0) + 1
        self._sum += value

    def flush(self) -> None:
        """Add the observations held to the histogram."""
        histogram = self._histogram
        if self._counts:
            buckets = histogram._buckets
            for index, count in self._counts.items():
                buckets[index].inc(count)
            histogram._sum.inc(self._sum)
            self._counts.clear()
            self._sum = 0.0
        if self._values:
            for value in self._values:
                histogram.observe(value)
            self._values.clear()
