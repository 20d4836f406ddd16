"""Example processor: alert when one instance fails its health check THRESHOLD times in a window.

Each streak is written to ``<prefix>alerts.failure-streaks`` as a ``FailureStreak`` record
(``schemas/failure_streak.avsc``, registered under the topic's value subject), keyed by
instance id, so a consumer in any language can read it. The streak then starts over; a
``health.passed`` or ``health.recovered`` ends it. ``GET /failure-streaks/{tenant}/`` answers
the failures counted so far per instance, e.g. ``{"streaks": {"inst_...": 2}, ...}``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from schemas.event import Event
from streams.app import StreamsContext

THRESHOLD = 3
WINDOW_SECONDS = 300.0
SCHEMA = Path(__file__).parent / "schemas" / "failure_streak.avsc"
OUTPUT = "alerts.failure-streaks"


def add_failure(failures: list[float], at: float) -> list[float]:
    """The failure times (epoch seconds) still in the window once one at ``at`` is added."""
    return [t for t in failures if t > at - WINDOW_SECONDS] + [at]


def streak_record(event: Event, failures: list[float]) -> dict[str, Any]:
    """The FailureStreak record of ``failures`` completed by ``event``."""
    return {
        "tenant_id": event.tenant_id,
        "instance_id": event.instance_id,
        "failures": len(failures),
        "window_seconds": WINDOW_SECONDS,
        "first_failed_at": datetime.fromtimestamp(failures[0], UTC),
        "last_failed_at": event.timestamp,
        "last_event_id": event.id,
    }


def install(ctx: StreamsContext) -> None:
    """Declare the streak agent, its table, its output topic and its web page."""
    app = ctx.app
    alerts = ctx.output(OUTPUT, schema=SCHEMA)
    # tenant -> {instance id: failure times}: keyed like the event topics (see counts.py).
    streaks = app.Table(
        "failure-streaks", default=dict, key_type=str, partitions=ctx.settings.partitions
    )
    health = ctx.events(types=["health.failed", "health.passed", "health.recovered"])

    @app.agent(health, name="failure-streaks", concurrency=1)
    async def watch(events: faust.StreamT[Event]) -> None:
        async for event in events:
            if event.instance_id is None:
                continue
            current = dict(streaks[event.tenant_id])
            failures = current.pop(event.instance_id, [])
            if event.type == "health.failed":
                failures = add_failure(failures, _seconds(event))
                if len(failures) >= THRESHOLD:
                    # Sent before the table is written: after a crash in between, the replayed
                    # event alerts again (at least once). The streak then starts over.
                    await alerts.send(event.instance_id, streak_record(event, failures))
                else:
                    current[event.instance_id] = failures
            streaks[event.tenant_id] = current  # written whole, so it reaches the changelog

    @app.page("/failure-streaks/{tenant}/")
    @app.table_route(table=streaks, match_info="tenant")
    async def streaks_view(web: Any, request: Any, tenant: str) -> Any:
        since = time.time() - WINDOW_SECONDS
        counts = {i: n for i, times in streaks[tenant].items() if (n := _after(times, since))}
        return web.json(
            {
                "tenant_id": tenant,
                "threshold": THRESHOLD,
                "window_seconds": WINDOW_SECONDS,
                "streaks": counts,
            }
        )


def _seconds(event: Event) -> float:
    return event.timestamp.timestamp()


def _after(times: list[float], since: float) -> int:
    return sum(1 for t in times if t > since)
