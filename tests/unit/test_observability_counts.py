"""The delivery worker's attempt tally and the router's batch counts: what each outcome is
counted as, and that counts reach the counters once per pass."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from delivery.metrics import HistogramBatch, delivery_metrics
from delivery.outcome import Outcome, Verdict
from delivery.retry_headers import FRESH, RetryState
from delivery.transport import AttemptResult
from plumbing.kafka.produce import Record
from plumbing.metrics import sample_values, scrape
from streams.metrics import router_metrics

DLT = "t.deliveries.dlt"


def attempts(**labels: str) -> float:
    return sum(
        v
        for found, v in sample_values(scrape().decode(), "cpevents_delivery_attempts_total")
        if all(found.get(k) == w for k, w in labels.items())
    )


def job(
    tier: int | None = None, due_ms: int = 0, created_s: float = 100.0, event_s: float = 0.0
) -> Any:
    state = RetryState(attempts=1, not_before_ms=due_ms) if due_ms else FRESH
    event = SimpleNamespace(timestamp_micros=int(event_s * 1e6))
    task = SimpleNamespace(created_at_micros=int(created_s * 1e6), event=event)
    return SimpleNamespace(task=task, webhook=None, state=state, tier=tier)


def result(verdict: Verdict, status: int, ms: float = 100.0) -> AttemptResult:
    return AttemptResult(status, Outcome(verdict, "x"), ms)


def test_a_pass_counts_each_outcome_by_status_class() -> None:
    metrics = delivery_metrics()
    latency = metrics.latency.collect()[0]
    before = {
        key: attempts(outcome=key[0], status_class=key[1])
        for key in [("delivered", "2xx"), ("retrying", "5xx"), ("dead_lettered", "4xx"),
                    ("dead_lettered", "5xx"), ("disabled", "4xx"), ("retrying", "none")]
    }  # fmt: skip
    count_before = next(s.value for s in latency.samples if s.name.endswith("_count"))
    tally = metrics.tally(DLT, "t.webhooks", clock=lambda: 110.0)
    retry = Record("t.deliveries.retry.5s", b"k", b"v")
    dead = Record(DLT, b"k", b"v")
    tally.add(job(), result(Verdict.DELIVERED, 200), [])
    tally.add(job(), result(Verdict.DELIVERED, 204), [])
    tally.add(job(), result(Verdict.RETRY, 503), [retry])
    tally.add(job(), result(Verdict.RETRY, 503), [dead])  # retries exhausted
    tally.add(job(), result(Verdict.DEAD_LETTER, 404), [dead])
    tally.add(job(), result(Verdict.GONE, 410), [dead])
    tally.add(job(), result(Verdict.RETRY, 0), [retry])  # no response
    assert attempts(outcome="delivered", status_class="2xx") == before[("delivered", "2xx")]
    tally.flush()  # counted once per pass
    delta = {
        key: attempts(outcome=key[0], status_class=key[1]) - value for key, value in before.items()
    }
    assert delta == {
        ("delivered", "2xx"): 2,
        ("retrying", "5xx"): 1,
        ("dead_lettered", "4xx"): 1,
        ("dead_lettered", "5xx"): 1,
        ("disabled", "4xx"): 1,
        ("retrying", "none"): 1,
    }
    latency = metrics.latency.collect()[0]
    count_after = next(s.value for s in latency.samples if s.name.endswith("_count"))
    assert count_after - count_before == 2  # the two deliveries, 10 s after the task was made


def test_retry_lateness_is_measured_from_the_due_time_to_the_attempt() -> None:
    metrics = delivery_metrics()
    family = metrics.lateness.collect()[0]
    sums = {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    tally = metrics.tally(DLT, "t.webhooks", clock=lambda: 1000.0)
    # Due at 997.5 s, attempted at 1000 - 0.5 (the request took 500 ms): 2 s late.
    tally.add(job(tier=0, due_ms=997_500), result(Verdict.DELIVERED, 200, ms=500.0), [])
    tally.add(job(), result(Verdict.DELIVERED, 200), [])  # a first attempt: no lateness
    tally.flush()
    after = {s.name: s.value for s in metrics.lateness.collect()[0].samples}
    assert (
        after["cpevents_delivery_retry_lateness_seconds_count"]
        - sums["cpevents_delivery_retry_lateness_seconds_count"]
        == 1
    )
    late = (
        after["cpevents_delivery_retry_lateness_seconds_sum"]
        - sums["cpevents_delivery_retry_lateness_seconds_sum"]
    )
    assert abs(late - 2.0) < 1e-6


def latency_count_and_sum() -> tuple[float, float]:
    samples = {s.name: s.value for s in delivery_metrics().latency.collect()[0].samples}
    name = "cpevents_delivery_latency_seconds"
    return samples[f"{name}_count"], samples[f"{name}_sum"]


def test_delivery_latency_runs_from_the_event_timestamp_to_the_2xx() -> None:
    tally = delivery_metrics().tally(DLT, "t.webhooks", clock=lambda: 110.0)
    count, total = latency_count_and_sum()
    # The event happened at 95 s, the router made its task at 100 s, the 2xx came at 110 s.
    tally.add(job(created_s=100.0, event_s=95.0), result(Verdict.DELIVERED, 200), [])
    tally.add(job(created_s=100.0, event_s=95.0), result(Verdict.RETRY, 503), [])  # no 2xx
    tally.flush()
    after_count, after_sum = latency_count_and_sum()
    assert after_count - count == 1
    assert abs(after_sum - total - 15.0) < 1e-6


def test_a_histogram_batch_lands_in_the_buckets_observe_would() -> None:
    registry = CollectorRegistry()
    bounds = (0.01, 0.1, 1.0, 10.0)
    one = Histogram("one_seconds", "d", buckets=bounds, registry=registry)
    batched = Histogram("batched_seconds", "d", buckets=bounds, registry=registry)
    batch = HistogramBatch(batched)
    values = [0.0, 0.01, 0.010001, 0.5, 1.0, 9.99, 10.0, 11.0, 1e9]
    for value in values:
        one.observe(value)
        batch.observe(value)
    assert registry.get_sample_value("batched_seconds_count") == 0  # held until the flush
    batch.flush()
    batch.flush()  # nothing held: adds nothing
    for bound in (*map(str, bounds), "+Inf"):
        assert registry.get_sample_value("batched_seconds_bucket", {"le": bound}) == (
            registry.get_sample_value("one_seconds_bucket", {"le": bound})
        )
    assert registry.get_sample_value("batched_seconds_sum") == sum(values)


def test_router_batches_count_unmatched_events_from_their_output_positions() -> None:
    metrics = router_metrics()

    def values() -> dict[str, float]:
        text = scrape().decode()
        names = ("consumed", "unmatched", "dead_lettered")
        return {
            n: sum(v for _, v in sample_values(text, f"cpevents_router_events_{n}_total"))
            for n in names
        } | {
            "tasks": sum(v for _, v in sample_values(text, "cpevents_router_tasks_produced_total"))
        }

    before = values()
    # 4 events: 2 tasks, none, 1 dead letter, none -> outputs start at 0, 2, 2, 3 of 3.
    metrics.batch(4, [0, 2, 2, 3], outputs=3, tasks=2, dead_lettered=1, seconds=0.01)
    after = values()
    assert {k: after[k] - before[k] for k in after} == {
        "consumed": 4,
        "unmatched": 2,
        "dead_lettered": 1,
        "tasks": 2,
    }
