"""Endpoint pages: list, create, edit, enable/disable, delete, rotate the secret, send a test
event, replay a time range.

Writes go through the gateway's own rules (``producers.gateway.validation`` and
``webhook_ops``) and its webhook store, under the gateway's write locks, so a change from the
portal and one from the API queue behind each other exactly as two API calls do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from producers.gateway.problems import Problem
from producers.gateway.queries import tenant_webhooks
from producers.gateway.validation import parse_webhook_create, parse_webhook_update
from producers.gateway.webhook_ops import (
    create_webhook,
    reencrypted,
    rotate_secret,
    update_webhook,
)
from producers.portal.app import PREFIX, Portal, Viewer
from producers.portal.filters import parse_range, sample_event_type, selected_patterns
from producers.portal.replay import ReplayTooLarge, matching_events, replay_tasks
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.timestamps import utc_now
from schemas.webhook import Webhook

Form = MultiDictProxy[str | Any]


def _see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


class EndpointPages:
    """Handlers of ``/portal/endpoints…``."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.gateway = portal.gateway

    def _own(self, request: web.Request, viewer: Viewer) -> Webhook | None:
        webhook = self.gateway.webhooks.get(request.match_info["id"])
        if webhook is None or not viewer.can_see(webhook.tenant_id):
            return None
        return webhook

    async def _put(self, webhook: Webhook) -> None:
        # As the gateway's writes: every write moves the secrets to the first key.
        await self.gateway.webhooks.put(reencrypted(webhook, self.gateway.box))

    async def index(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/endpoints: the viewer's endpoints."""
        webhooks = tenant_webhooks(self.gateway.webhooks.all(), viewer.tenant_id)
        return self.portal.render(
            request, viewer, "endpoints.html", webhooks=webhooks, notice=notice_text(request.query)
        )

    async def new(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/endpoints/new: the empty form."""
        return self._form(request, viewer, None, {"url": "", "events": [], "tenant": ""})

    def _form(
        self,
        request: web.Request,
        viewer: Viewer,
        webhook: Webhook | None,
        values: Mapping[str, Any],
        error: Problem | None = None,
    ) -> web.Response:
        return self.portal.render(
            request,
            viewer,
            "endpoint_form.html",
            status=422 if error else 200,
            webhook=webhook,
            values=values,
            error=error,
        )

    async def create(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints: create, then show the secret once."""
        form = await request.post()
        events = selected_patterns(_strings(form, "events"), str(form.get("extra_events", "")))
        tenant = viewer.session.tenant_id or str(form.get("tenant", "")).strip() or None
        values = {"url": str(form.get("url", "")), "events": events, "tenant": tenant or ""}
        try:
            if tenant is None:
                raise Problem(422, "invalid-field", "is required", "tenant")
            create = parse_webhook_create({"url": values["url"], "events": events})
            cap = self.portal.settings.max_webhooks_per_tenant
            # The gateway's per-tenant lock: concurrent creations cannot pass the cap together.
            async with self.gateway._tenant_locks.hold(tenant):
                if self.gateway.webhooks.count_for(tenant) >= cap:
                    raise Problem(422, "too-many-webhooks", f"{cap} endpoints is the limit", "url")
                webhook, secret = create_webhook(create, tenant, self.gateway.box, utc_now())
                await self._put(webhook)
        except Problem as problem:
            return self._form(request, viewer, None, values, problem)
        return self._secret(request, viewer, webhook, secret, created=True)

    def _secret(
        self, request: web.Request, viewer: Viewer, webhook: Webhook, secret: str, created: bool
    ) -> web.Response:
        # The one place a signing secret is ever shown: right after it was made.
        return self.portal.render(
            request, viewer, "secret.html", webhook=webhook, secret=secret, created=created
        )

    async def show(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/endpoints/{id}: the edit form and the endpoint's actions."""
        webhook = self._own(request, viewer)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        values = {"url": webhook.url, "events": list(webhook.events), "tenant": webhook.tenant_id}
        return self._form(request, viewer, webhook, values)

    async def update(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints/{id}: save the URL and events."""
        form = await request.post()
        events = selected_patterns(_strings(form, "events"), str(form.get("extra_events", "")))
        values = {"url": str(form.get("url", "")), "events": events}
        try:
            changes = parse_webhook_update(values)
            updated = await self._change(
                request, viewer, lambda w: update_webhook(w, changes, utc_now())
            )
        except Problem as problem:
            webhook = self._own(request, viewer)
            if webhook is None:
                return self.portal.not_found(request, viewer, "endpoint")
            return self._form(request, viewer, webhook, {**values, "tenant": ""}, problem)
        if updated is None:
            return self.portal.not_found(request, viewer, "endpoint")
        raise _see_other(f"{PREFIX}/endpoints?notice=saved")

    async def toggle(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints/{id}/toggle: enable or disable."""
        updated = await self._change(
            request, viewer, lambda w: update_webhook(w, {"active": not w.active}, utc_now())
        )
        if updated is None:
            return self.portal.not_found(request, viewer, "endpoint")
        raise _see_other(f"{PREFIX}/endpoints?notice={'enabled' if updated.active else 'disabled'}")

    async def _change(self, request: web.Request, viewer: Viewer, change: Any) -> Webhook | None:
        """Apply ``change(webhook)`` under the webhook's write lock; None: not found."""
        if self._own(request, viewer) is None:
            return None
        async with self.gateway._webhook_locks.hold(request.match_info["id"]):
            webhook = self._own(request, viewer)  # re-read: a write before ours may have landed
            if webhook is None:
                return None
            updated: Webhook = change(webhook)
            await self._put(updated)
            return updated

    async def confirm_delete(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """GET /portal/endpoints/{id}/delete: the confirmation page."""
        webhook = self._own(request, viewer)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        return self.portal.render(request, viewer, "confirm_delete.html", webhook=webhook)

    async def delete(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints/{id}/delete: delete (after the confirmation page)."""
        if self._own(request, viewer) is None:
            return self.portal.not_found(request, viewer, "endpoint")
        async with self.gateway._webhook_locks.hold(request.match_info["id"]):
            await self.gateway.webhooks.delete(request.match_info["id"])
        raise _see_other(f"{PREFIX}/endpoints?notice=deleted")

    async def rotate(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints/{id}/rotate: a new secret, shown once."""
        settings = self.portal.settings
        found: dict[str, str] = {}

        def rotated(webhook: Webhook) -> Webhook:
            new, found["secret"] = rotate_secret(
                webhook, self.gateway.box, self.gateway.overlap, utc_now(),
                settings.max_active_secrets,
            )  # fmt: skip
            return new

        webhook = await self._change(request, viewer, rotated)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        return self._secret(request, viewer, webhook, found["secret"], created=False)

    async def send_test(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """A real event of a type the endpoint subscribes to, as a delivery task for this
        endpoint alone (not through the router, which would also send it to the tenant's other
        endpoints); the delivery worker signs and records it like any other."""
        webhook = self._own(request, viewer)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        event_type = sample_event_type(webhook.events)
        if event_type is None or not webhook.active:
            raise _see_other(f"{PREFIX}/endpoints?notice=cannot-test")
        event = Event.new(event_type, webhook.tenant_id).with_payload(
            {"test": True, "message": "A test event sent from the Ctrl Plane Events portal"}
        )
        topic = self.portal.settings.topics.deliveries
        task = DeliveryTask.for_event(event, webhook.id, webhook.url)
        value = await asyncio.to_thread(self.gateway.serde.tasks.encode, task, topic)
        await self.portal.producer.send(topic, webhook.id.encode(), value)
        raise _see_other(f"{PREFIX}/deliveries?endpoint={webhook.id}&notice=test-sent")

    async def replay(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """The replay form; with a range, how many events it holds (the confirmation step)."""
        webhook = self._own(request, viewer)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        since, until = request.query.get("since"), request.query.get("until")
        count: int | None = None
        error = None
        window = None
        if since or until:
            try:
                window = parse_range(since, until, utc_now())
                count = await asyncio.to_thread(self._count, webhook, *window)
            except (ValueError, TimeoutError) as exc:
                error = str(exc)
        return self.portal.render(
            request, viewer, "replay.html", webhook=webhook, window=window, count=count,
            error=error,
        )  # fmt: skip

    def _count(self, webhook: Webhook, *window: Any) -> int:
        serde = self.gateway.serde
        return sum(1 for _ in matching_events(self.portal.settings, serde, webhook, *window))

    async def send_replay(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """POST /portal/endpoints/{id}/replay: send the confirmed range's events."""
        webhook = self._own(request, viewer)
        if webhook is None:
            return self.portal.not_found(request, viewer, "endpoint")
        form = await request.post()
        try:
            window = parse_range(str(form.get("since", "")), str(form.get("until", "")), utc_now())
            records = await asyncio.to_thread(
                replay_tasks, self.portal.settings, self.gateway.serde, webhook, *window
            )
        except (ValueError, ReplayTooLarge, TimeoutError) as exc:
            return self.portal.render(
                request, viewer, "replay.html", status=422, webhook=webhook, window=None,
                count=None, error=str(exc),
            )  # fmt: skip
        await self.portal.producer.send_batch(records)
        raise _see_other(
            f"{PREFIX}/deliveries?endpoint={webhook.id}&notice=replayed&count={len(records)}"
        )


_NOTICES = {
    "saved": "Endpoint saved.",
    "deleted": "Endpoint deleted.",
    "enabled": "Endpoint enabled.",
    "disabled": "Endpoint disabled: it receives nothing until enabled again.",
    "cannot-test": "A test event needs an enabled endpoint subscribed to a Ctrl Plane type.",
    "test-sent": "Test event sent: it appears below within seconds.",
    "replayed": "{count} events queued for redelivery.",
    "requeued": "{count} dead letters sent back for delivery.",
    "retried": "Delivery queued again: new attempts appear below.",
}


def notice_text(query: Mapping[str, str]) -> str | None:
    """A fixed message for ``?notice=`` (never text from the URL itself)."""
    template = _NOTICES.get(query.get("notice", ""))
    if template is None:
        return None
    count = query.get("count", "0")
    return template.format(count=int(count) if count.isdigit() else 0)


def _strings(form: Form, name: str) -> list[str]:
    return [str(value) for value in form.getall(name, [])]


def add_routes(app: web.Application, portal: Portal) -> None:
    """The endpoint pages on ``app``."""
    pages = EndpointPages(portal)
    guard = portal.guard
    base = f"{PREFIX}/endpoints"
    app.router.add_get(base, guard(pages.index))
    app.router.add_get(f"{base}/new", guard(pages.new))
    app.router.add_post(base, guard(pages.create, write=True))
    app.router.add_get(base + "/{id}", guard(pages.show))
    app.router.add_post(base + "/{id}", guard(pages.update, write=True))
    app.router.add_post(base + "/{id}/toggle", guard(pages.toggle, write=True))
    app.router.add_get(base + "/{id}/delete", guard(pages.confirm_delete))
    app.router.add_post(base + "/{id}/delete", guard(pages.delete, write=True))
    app.router.add_post(base + "/{id}/rotate", guard(pages.rotate, write=True))
    app.router.add_post(base + "/{id}/test", guard(pages.send_test, write=True))
    app.router.add_get(base + "/{id}/replay", guard(pages.replay))
    app.router.add_post(base + "/{id}/replay", guard(pages.send_replay, write=True))
