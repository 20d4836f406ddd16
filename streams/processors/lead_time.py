"""Example processor: deploy lead time per tenant, p50/p90 over the last hour, on a web page.

A deploy is ``deploy.started`` until ``deploy.succeeded`` or ``deploy.failed`` with the same
deploy key (``payload.deploy_id``, else the instance id); its lead time is the difference of the
events' timestamps. ``GET /lead-times/{tenant}/`` shows a small HTML page,
``GET /lead-times/{tenant}/?format=json`` the same figures as JSON.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import faust

from schemas.event import Event
from streams.app import StreamsContext

WINDOW_SECONDS = 3600.0
STARTS_KEPT_SECONDS = 86_400.0  # a deploy that never finished is forgotten after a day


def deploy_key(event: Event) -> str | None:
    """What pairs a deploy's start with its end: ``payload.deploy_id``, else the instance."""
    deploy_id = event.payload.get("deploy_id")
    return str(deploy_id) if deploy_id else event.instance_id


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile ``pct`` (0-100] of ``values``; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summary(samples: list[list[Any]], now: float) -> dict[str, Any]:
    """Lead-time figures of ``samples`` ([finished at, seconds, outcome]) in the window."""
    recent = [s for s in samples if s[0] > now - WINDOW_SECONDS]
    seconds = [s[1] for s in recent]
    return {
        "window_seconds": WINDOW_SECONDS,
        "deploys": len(recent),
        "failed": sum(1 for s in recent if s[2] == "deploy.failed"),
        "p50_seconds": percentile(seconds, 50),
        "p90_seconds": percentile(seconds, 90),
    }


def install(ctx: StreamsContext) -> None:
    """Declare the lead-time agent, its two tables (keyed by tenant) and its web page."""
    app = ctx.app
    partitions = ctx.settings.partitions
    starts = app.Table("deploy-starts", default=dict, key_type=str, partitions=partitions)
    lead_times = app.Table("deploy-lead-times", default=list, key_type=str, partitions=partitions)
    deploys = ctx.events(types=["deploy.started", "deploy.succeeded", "deploy.failed"])

    @app.agent(deploys, name="deploy-lead-times", concurrency=1)
    async def measure(events: faust.StreamT[Event]) -> None:
        async for event in events:
            key, at = deploy_key(event), event.timestamp.timestamp()
            if key is None:
                continue
            pending = dict(starts[event.tenant_id])
            if event.type == "deploy.started":
                pending = {k: t for k, t in pending.items() if t > at - STARTS_KEPT_SECONDS}
                pending[key] = at
            elif key in pending:
                sample = [at, at - pending.pop(key), str(event.type)]
                kept = [s for s in lead_times[event.tenant_id] if s[0] > at - WINDOW_SECONDS]
                lead_times[event.tenant_id] = [*kept, sample]
            starts[event.tenant_id] = pending

    @app.page("/lead-times/{tenant}/")
    @app.table_route(table=lead_times, match_info="tenant")
    async def lead_times_view(web: Any, request: Any, tenant: str) -> Any:
        figures = {"tenant_id": tenant, **summary(lead_times[tenant], time.time())}
        if request.query.get("format") == "json":
            return web.json(figures)
        return web.html(page(figures))


def page(figures: dict[str, Any]) -> str:
    """The HTML page of a tenant's figures."""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in figures.items()
    )
    title = f"Deploy lead time: {html.escape(str(figures['tenant_id']))}"
    return f"<!doctype html><title>{title}</title><h1>{title}</h1><table>{rows}</table>"
