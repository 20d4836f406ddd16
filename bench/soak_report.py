"""The soak's printed lines: one per interval, and the summary. Pure formatting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from bench.soak_ledger import Ledger, Window, percentile


def _top(counter: Mapping[str, int] | Counter[str], limit: int = 4) -> str:
    items = sorted(counter.items(), key=lambda kv: -kv[1])[:limit]
    return "; ".join(f"{n} x {reason}" for reason, n in items) or "none"


def interval_line(
    elapsed: float,
    seconds: float,
    window: Window,
    ledger: Ledger,
    overdue: int,
    lag: Mapping[str, int | None],
) -> str:
    """One report line: rates over the last ``seconds``, latency, lag and running totals."""
    totals = ledger.totals
    ms = [1000 * v for v in window.latencies]
    healthy = [1000 * v for v in window.healthy_latencies]
    lags = " ".join(f"{name} {'?' if n is None else n}" for name, n in lag.items())
    dead = sum(totals.dead_letter_reasons.values())
    return (
        f"[{int(elapsed) // 60:3d}:{int(elapsed) % 60:02d}] "
        f"pub {window.published / seconds:6.1f}/s dlv {window.delivered / seconds:6.1f}/s "
        f"latency p50/p99 {percentile(healthy, 0.5):.0f}/{percentile(healthy, 0.99):.0f}ms "
        f"(healthy endpoints), {percentile(ms, 0.5):.0f}/{percentile(ms, 0.99):.0f}ms (all) | "
        f"lag {lags} | "
        f"published {totals.published} delivered {totals.delivered} lost-so-far {overdue} "
        f"dup {totals.duplicates_same_id}+{totals.duplicates_other_id} (same+other webhook-id) "
        f"dead-lettered {dead} [{_top(totals.dead_letter_reasons, 2)}]"
    )


def summary(
    ledger: Ledger,
    load_seconds: float,
    total_seconds: float,
    faults: Sequence[tuple[float, str]],
    settings_note: str,
) -> list[str]:
    """The end-of-run summary lines."""
    totals = ledger.totals
    verdict = ledger.verdict()
    ms = [1000 * v for v in ledger.latencies]
    healthy = [1000 * v for v in ledger.healthy_latencies]
    lines = [
        "== soak summary ==",
        f"settings: {settings_note}",
        f"load {load_seconds:.0f}s, drain until {total_seconds:.0f}s; "
        f"published {totals.published} events ({totals.published / load_seconds:.1f}/s), "
        f"{totals.unconfirmed} publishes unconfirmed (error or timeout: not expected)",
        f"expected deliveries {sum(verdict.values())}: "
        + ", ".join(f"{state} {n}" for state, n in sorted(verdict.items())),
        f"delivered {totals.delivered} ({totals.delivered / total_seconds:.1f}/s over the run); "
        f"latency publish→received, healthy endpoints: p50 {percentile(healthy, 0.5):.0f} ms, "
        f"p99 {percentile(healthy, 0.99):.0f} ms, max {max(healthy, default=0):.0f} ms; "
        f"all: p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, "
        f"max {max(ms, default=0):.0f} ms",
        f"duplicates: {totals.duplicates_same_id} with the same webhook-id, "
        f"{totals.duplicates_other_id} with another",
        f"non-2xx answers by status: {dict(sorted(totals.failed_answers.items()))}",
        f"dead letters (deliveries.dlt) by reason: {_top(totals.dead_letter_reasons, 8)}",
        f"router dead letters (events.dlt): {_top(totals.router_dead_letters)}",
        f"disabled attempt records by reason: {_top(totals.disabled_reasons)}",
        f"untracked POSTs (warm-up probes, webhook.disabled events): {totals.untracked_receipts}",
        "faults and webhook changes (seconds from the start of the load):",
        *(f"  {at:7.1f}s  {what}" for at, what in faults),
    ]
    lost = ledger.lost()
    lines.append(f"LOST: {lost}" if lost else "nothing lost")
    lines.extend(f"  lost: {sample}" for sample in ledger.lost_samples())
    return lines
