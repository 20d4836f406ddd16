"""Example processor: per-tenant, per-type event counts over tumbling windows, served over HTTP.

``GET /counts/{tenant}/`` on a worker's web port answers the counts of the current window, e.g.
``{"tenant_id": "ten_42", "window_seconds": 60.0, "counts": {"instance.created": 3}}``.
The window size is ``CPEVENTS_COUNTS_WINDOW_SECONDS`` (default 60).
"""

from __future__ import annotations

import os
from typing import Any

import faust

from schemas.event import Event
from streams.app import StreamsContext

WINDOW_ENV = "CPEVENTS_COUNTS_WINDOW_SECONDS"
DEFAULT_WINDOW_SECONDS = 60.0
WINDOWS_KEPT = 24  # how many past windows a worker keeps


def window_seconds() -> float:
    """The window size: ``CPEVENTS_COUNTS_WINDOW_SECONDS`` or one minute."""
    value = os.environ.get(WINDOW_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_WINDOW_SECONDS
    except ValueError:
        raise ValueError(f"{WINDOW_ENV}: {value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{WINDOW_ENV}: must be positive, got {value!r}")
    return seconds


def install(ctx: StreamsContext) -> None:
    """Declare the counting agent, its windowed table and its web page on ``ctx.app``."""
    app = ctx.app
    size = window_seconds()
    # Keyed by tenant, like the event topics, so a tenant's counts live in the partition its
    # events arrive on (the table's changelog is written to the source record's partition).
    table = app.Table(
        "event-counts",
        default=dict,
        key_type=str,
        partitions=ctx.settings.partitions,
    )
    windowed = table.tumbling(size, expires=size * WINDOWS_KEPT).relative_to_stream()

    @app.agent(ctx.events(), name="event-counts", concurrency=1)
    async def count(events: faust.StreamT[Event]) -> None:
        async for event in events:
            # Table values are written whole: a mutated dict would not reach the changelog.
            counts = dict(windowed[event.tenant_id].current())
            counts[str(event.type)] = counts.get(str(event.type), 0) + 1
            windowed[event.tenant_id] = counts

    @app.page("/counts/{tenant}/")
    @app.table_route(table=table, match_info="tenant")
    async def counts_view(web: Any, request: Any, tenant: str) -> Any:
        return web.json(
            {
                "tenant_id": tenant,
                "window_seconds": size,
                "counts": windowed[tenant].now(),
            }
        )
