"""``cpevents status``: one screen for an operator, read from Kafka (not from a running worker).

Lag per consumer group and topic, dead-letter topic sizes, endpoints with an open breaker,
webhooks disabled in the last day, attempts in the last minute by outcome. ``--json`` prints the
same as one JSON document for scripts. Kafka or the registry unreachable: one line naming it
and the setting, exit code 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import check_reachable, console, load_settings
from plumbing.registry_client import serde_for

if TYPE_CHECKING:
    from cpevents.status import Status


def _when(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def _render(status: Status) -> None:
    lag = Table("consumer group", "topic", "lag", title="Consumer lag")
    for sample in status.lag:
        lag.add_row(sample.group, sample.topic, str(sample.lag))
    console.print(lag)
    dead = Table("dead-letter topic", "records", title="Dead letters")
    for topic, size in status.dead_letters.items():
        dead.add_row(topic, str(size))
    console.print(dead)
    window = f"last {status.window_s:.0f}s of the attempt log"
    breakers = Table(
        "endpoint", "failures", "since", "last error", title=f"Open breakers ({window})"
    )
    for breaker in status.breakers:
        since = _when(breaker.since_ms) if breaker.since_ms else ""
        breakers.add_row(breaker.endpoint, str(breaker.failures), since, breaker.last_error)
    console.print(breakers if status.breakers else "Open breakers: none")
    disabled = Table("webhook", "tenant", "url", "at", "reason", title="Webhooks disabled (1 day)")
    for item in status.disabled:
        disabled.add_row(item.webhook_id, item.tenant_id, item.url, _when(item.at_ms), item.reason)
    console.print(disabled if status.disabled else "Webhooks disabled in the last day: none")
    attempts = Table("outcome", "attempts", title="Attempts in the last minute")
    for outcome, count in status.attempts_last_minute.items():
        attempts.add_row(outcome, str(count))
    console.print(attempts)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for scripts")] = False,
    window: Annotated[
        float, typer.Option(help="Seconds of the attempt log read to judge breakers (>= 60)")
    ] = 120.0,
) -> None:
    """Lag, dead letters, open breakers, disabled webhooks and recent attempts, from Kafka."""
    settings = load_settings()
    check_reachable(settings)  # else one line naming what does not answer, exit 2
    # Imported here: it loads the delivery and streams modules, which other commands need not.
    from cpevents.status import gather

    report = gather(settings, serde_for(settings), window)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    _render(report)
