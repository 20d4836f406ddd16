"""Delivery pages: the filtered deliveries list (rows polled live), one delivery's attempt
timeline and event payload, retrying it, and the dead letters with their redrive.

A redrive sends the dead-lettered task back to the deliveries topic unchanged (the shared
``plumbing.kafka.deadletter.redrive_record``), as ``POST /v1/deliveries/{id}/retry`` does; the
portal takes the record from its dead-letter view instead of scanning the topic again.

Every handler first takes the readers it needs (the gateway's attempt-log index and the
portal's feed), which start on the first request after an idle period (producers/on_demand.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from plumbing.kafka.deadletter import redrive_record
from plumbing.kafka.produce import Record
from producers.gateway.delivery_index import DeliveryFilter
from producers.gateway.stores import DeliveryStore
from producers.portal.app import PREFIX, Portal, Viewer
from producers.portal.feed import DeadTask, PortalFeed
from producers.portal.filters import DeliveryFilters, parse_delivery_filters
from producers.portal.pages import notice_text
from schemas.delivery_records import DeliveryStatus, WebhookDelivery

# Rows a deliveries page shows, and how many deliveries a filtered walk reads at most for them.
PAGE_ROWS = 50
_WALK_LIMIT = 5000


@dataclass(frozen=True)
class _Live:
    """The readers one request uses, taken once (they may be stopped meanwhile when idle,
    and stay readable)."""

    deliveries: DeliveryStore
    feed: PortalFeed

    def event_type(self, delivery_id: str) -> str | None:
        task = self.feed.task(delivery_id)
        return str(task.event.type) if task is not None else None


class ActivityPages:
    """Handlers of ``/portal/deliveries…`` and ``/portal/dead-letters…``."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.gateway = portal.gateway

    async def _live(self) -> _Live:
        deliveries, feed = await asyncio.gather(self.gateway.deliveries(), self.portal.feed())
        return _Live(deliveries, feed)

    def _rows(self, live: _Live, viewer: Viewer, filters: DeliveryFilters) -> list[WebhookDelivery]:
        # The gateway's index narrows by tenant, endpoint and status; type and time are checked
        # here, walking newest first until a page is full (bounded, so a rare type stays cheap).
        where = DeliveryFilter(viewer.tenant_id, None, filters.webhook_id, filters.status)
        page = live.deliveries.page(where, _WALK_LIMIT, None)
        rows = []
        for delivery in page.deliveries:
            if viewer.can_see(delivery.tenant_id) and filters.matches(
                delivery, live.event_type(delivery.id)
            ):
                rows.append(delivery)
                if len(rows) == PAGE_ROWS:
                    break
        return rows

    async def _context(self, viewer: Viewer, filters: DeliveryFilters) -> dict[str, Any]:
        live = await self._live()
        rows = self._rows(live, viewer, filters)
        endpoints = {w.id: w for w in self.gateway.webhooks.all() if viewer.can_see(w.tenant_id)}
        return {
            "rows": rows,
            "types": {d.id: live.event_type(d.id) for d in rows},
            "endpoints": endpoints,
            "filters": filters,
            "statuses": [str(s) for s in DeliveryStatus],
        }

    async def index(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/deliveries: the filtered list; its rows poll every 2 s."""
        filters, errors = parse_delivery_filters(request.query)
        return self.portal.render(
            request, viewer, "deliveries.html", errors=errors, notice=notice_text(request.query),
            **await self._context(viewer, filters),
        )  # fmt: skip

    async def rows(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """The rows alone, for the page's polling (every 2 s)."""
        filters, _ = parse_delivery_filters(request.query)
        return self.portal.render(
            request, viewer, "_delivery_rows.html", **await self._context(viewer, filters)
        )

    @staticmethod
    def _own(live: _Live, request: web.Request, viewer: Viewer) -> WebhookDelivery | None:
        delivery = live.deliveries.get(request.match_info["id"])
        if delivery is None or not viewer.can_see(delivery.tenant_id):
            return None
        return delivery

    async def show(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/deliveries/{id}: the attempt timeline and the event's JSON."""
        live = await self._live()
        delivery = self._own(live, request, viewer)
        if delivery is None:
            return self.portal.not_found(request, viewer, "delivery")
        task = live.feed.task(delivery.id)
        payload = None
        if task is not None:
            payload = json.dumps(task.event.to_json_dict(), indent=2, ensure_ascii=False)
        return self.portal.render(
            request, viewer, "delivery.html", delivery=delivery, task=task, payload=payload,
            endpoint=self.gateway.webhooks.get(delivery.webhook_id),
            timeline=live.feed.timeline(delivery.id), notice=notice_text(request.query),
        )  # fmt: skip

    async def timeline(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """The attempt timeline alone, for polling."""
        live = await self._live()
        delivery = self._own(live, request, viewer)
        if delivery is None:
            return self.portal.not_found(request, viewer, "delivery")
        return self.portal.render(
            request, viewer, "_timeline.html", delivery=delivery,
            timeline=live.feed.timeline(delivery.id),
        )  # fmt: skip

    @staticmethod
    def _dead(live: _Live, viewer: Viewer) -> list[DeadTask]:
        """The viewer's dead letters still dead (a redriven one leaves once retried)."""
        found = []
        for dead in live.feed.dead_letters():
            if viewer.tenant_id is not None and dead.task.tenant_id != viewer.tenant_id:
                continue
            if not viewer.can_see(dead.task.tenant_id):
                continue
            current = live.deliveries.get(dead.task.id)
            if current is None or current.status == DeliveryStatus.DEAD_LETTERED:
                found.append(dead)
        return found

    async def dead_letters(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/dead-letters: the viewer's dead letters with their reason."""
        dead = self._dead(await self._live(), viewer)
        endpoints = {w.id: w for w in self.gateway.webhooks.all() if viewer.can_see(w.tenant_id)}
        return self.portal.render(
            request, viewer, "dead_letters.html", dead=dead, endpoints=endpoints,
            notice=notice_text(request.query),
        )  # fmt: skip

    async def _redrive(self, chosen: Iterable[DeadTask]) -> int:
        topic = self.portal.settings.topics.deliveries
        records: list[Record] = [redrive_record(d.key, d.value, d.headers, topic) for d in chosen]
        await self.portal.producer.send_batch(records)
        return len(records)

    async def redrive(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """Redrive one dead letter (``delivery_id``) or all of one endpoint (``endpoint``)."""
        form = await request.post()
        delivery_id = str(form.get("delivery_id", ""))
        endpoint = str(form.get("endpoint", ""))
        dead = self._dead(await self._live(), viewer)
        if delivery_id:
            chosen = [d for d in dead if d.task.id == delivery_id]
        else:
            chosen = [d for d in dead if endpoint and d.task.webhook_id == endpoint]
        if not chosen:
            return self.portal.not_found(request, viewer, "dead letter")
        count = await self._redrive(chosen)
        back = str(form.get("back", ""))
        if back == "delivery" and delivery_id:
            raise web.HTTPSeeOther(f"{PREFIX}/deliveries/{delivery_id}?notice=requeued&count=1")
        raise web.HTTPSeeOther(f"{PREFIX}/dead-letters?notice=requeued&count={count}")

    async def retry(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """Retry one delivery: a dead letter is redriven; any other is sent again as a new
        task with the same id (a redelivery, signed as the first time)."""
        live = await self._live()
        delivery = self._own(live, request, viewer)
        if delivery is None:
            return self.portal.not_found(request, viewer, "delivery")
        dead = [d for d in self._dead(live, viewer) if d.task.id == delivery.id]
        if dead:
            await self._redrive(dead)
        else:
            task = live.feed.task(delivery.id)
            if task is None:
                return self.portal.not_found(request, viewer, "delivery task")
            topic = self.portal.settings.topics.deliveries
            value = await asyncio.to_thread(self.gateway.serde.tasks.encode, task, topic)
            await self.portal.producer.send(topic, task.webhook_id.encode(), value)
        raise web.HTTPSeeOther(f"{PREFIX}/deliveries/{delivery.id}?notice=retried")


def add_routes(app: web.Application, portal: Portal) -> None:
    """The delivery and dead-letter pages on ``app``."""
    pages = ActivityPages(portal)
    guard = portal.guard
    app.router.add_get(f"{PREFIX}/deliveries", guard(pages.index))
    app.router.add_get(f"{PREFIX}/deliveries/rows", guard(pages.rows))
    app.router.add_get(PREFIX + "/deliveries/{id}", guard(pages.show))
    app.router.add_get(PREFIX + "/deliveries/{id}/timeline", guard(pages.timeline))
    app.router.add_post(PREFIX + "/deliveries/{id}/retry", guard(pages.retry, write=True))
    app.router.add_get(f"{PREFIX}/dead-letters", guard(pages.dead_letters))
    app.router.add_post(f"{PREFIX}/dead-letters/redrive", guard(pages.redrive, write=True))
