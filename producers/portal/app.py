"""The portal's core: its key, sessions, CSRF, rendering, the link API, and mounting on the
gateway's application.

Access: ``POST /v1/portal-links`` (a gateway bearer token) signs a link to ``/portal/`` for one
tenant (or, with the admin token and no tenant, for an operator who sees every tenant). Opening
it sets an HttpOnly, SameSite=Strict session cookie and moves on to a URL without the token.
Every page then reads the session; every state-changing request must carry the session's CSRF
token (a form field or the ``X-CSRF-Token`` header), else 403.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.clients import producer_config
from plumbing.settings import Settings
from producers.gateway.problems import Problem
from producers.gateway.validation import check_content_type, check_size, parse_json
from producers.on_demand import OnDemand
from producers.portal import tokens
from producers.portal.feed import PortalFeed
from producers.portal.filters import event_type_groups, format_time
from producers.portal.tokens import Claims, TokenError

if TYPE_CHECKING:
    from producers.gateway.server import Gateway

log = logging.getLogger(__name__)

SESSION_COOKIE = "cpe_portal"
TENANT_COOKIE = "cpe_portal_tenant"
PREFIX = "/portal"
_HERE = Path(__file__).parent
# script-src 'self': even a value that escaped escaping could not run inline script.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DEFAULT_LINK_SECONDS = 3600

PageHandler = Callable[[web.Request, "Viewer"], Awaitable[web.StreamResponse]]
WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def link_base(settings: Settings, scheme: str, host: str) -> str:
    """Where portal links point: ``CPEVENTS_PORTAL_BASE_URL``; else, in development, the
    address the request came to (a Host header a proxy passed on unchecked could name another
    site, hence the setting in production)."""
    if settings.portal_base_url:
        return settings.portal_base_url.rstrip("/")
    return f"{scheme}://{host}"


def cookie_secure(settings: Settings, request_secure: bool) -> bool:
    """Cookies are Secure when the request came over TLS or the public URL is https (TLS
    ended at a proxy in front of the gateway)."""
    return request_secure or (settings.portal_base_url or "").startswith("https://")


def portal_key(settings: Settings) -> bytes:
    """The HMAC key of links and sessions: ``CPEVENTS_PORTAL_KEY``, else one for this process
    only (logged as a WARNING: links and sessions then die with the process, and several
    gateway replicas would not accept each other's)."""
    if settings.portal_key is not None and settings.portal_key.get_secret_value():
        return settings.portal_key.get_secret_value().encode()
    log.warning(
        "CPEVENTS_PORTAL_KEY is not set: portal links are signed with a random per-process key "
        "and stop working when this gateway restarts"
    )
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a session, the tenant the pages show (None: all) and the CSRF token."""

    session: Claims
    tenant_id: str | None
    csrf: str

    @property
    def is_operator(self) -> bool:
        return self.session.is_operator

    def can_see(self, tenant_id: str) -> bool:
        """Whether this session may see ``tenant_id``'s data (else: 404, as the API)."""
        return self.session.is_operator or self.session.tenant_id == tenant_id


class Portal:
    """The portal's state, shared by its pages (see ``pages`` and ``activity``)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.key = portal_key(self.settings)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,  # every value shown is escaped, payloads included
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = _when
        # The feed tails busy topics: it runs only while pages need it (issue 20).
        self._feed: OnDemand[PortalFeed] = OnDemand(
            "portal feed", self._start_feed, PortalFeed.stop, gateway.reader_idle
        )
        self._producer: AsyncProducer | None = None

    async def lifecycle(self, _: web.Application) -> AsyncIterator[None]:
        """Start the portal's producer after the gateway's; stop it and the feed before."""
        self._producer = AsyncProducer(producer_config(self.settings))
        try:
            yield
        finally:
            await self._feed.close()
            await self._producer.close()

    async def _start_feed(self) -> PortalFeed:
        feed = PortalFeed(self.settings, self.gateway.serde)
        try:
            await feed.start()
        except BaseException:
            await asyncio.to_thread(feed.stop)
            raise
        return feed

    async def feed(self) -> PortalFeed:
        """The portal's feed, started (and caught up with its topics) if it was idle."""
        if self._producer is None:
            raise RuntimeError("portal not started")
        return await self._feed.get()

    @property
    def producer(self) -> AsyncProducer:
        if self._producer is None:
            raise RuntimeError("portal not started")
        return self._producer

    # -- sessions ---------------------------------------------------------------------------

    def viewer(self, request: web.Request) -> Viewer | None:
        """The request's session, or None (no cookie, tampered or expired)."""
        try:
            session = tokens.verify(
                self.key, request.cookies.get(SESSION_COOKIE), tokens.SESSION, time.time()
            )
        except TokenError:
            return None
        tenant = session.tenant_id
        if tenant is None:  # an operator picks the tenant to look at (or all)
            tenant = request.cookies.get(TENANT_COOKIE) or None
        return Viewer(session, tenant, tokens.csrf_token(self.key, session))

    def guard(self, handler: PageHandler, write: bool = False) -> WebHandler:
        """``handler`` for signed-in viewers only; a write also needs the CSRF token."""

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            viewer = self.viewer(request)
            if viewer is None:
                return self.render(request, None, "expired.html", status=401)
            if write:
                presented = request.headers.get("X-CSRF-Token")
                if presented is None:
                    presented = str((await request.post()).get("csrf", "")) or None
                if not tokens.check_csrf(self.key, viewer.session, presented):
                    return self.render(request, viewer, "forbidden.html", status=403)
            return await handler(request, viewer)

        return guarded

    async def open_link(self, request: web.Request) -> web.StreamResponse:
        """``GET /portal/?token=…``: a valid link starts a session; the page then moves on to
        the endpoints without the token in the address bar (or history, or a Referer)."""
        token = request.query.get("token")
        if token is None:
            if self.viewer(request) is None:
                return self.render(request, None, "expired.html", status=401)
            raise web.HTTPSeeOther(f"{PREFIX}/endpoints")
        try:
            link = tokens.verify(self.key, token, tokens.LINK, time.time())
        except TokenError:
            return self.render(request, None, "expired.html", status=401)
        session, lifetime = tokens.session_from_link(self.key, link, time.time())
        # A page that navigates on (not a 303): a SameSite=Strict cookie set while following a
        # link from another site (a mail) is only sent on a navigation started by our own page.
        response = self.render(request, None, "signing_in.html", target=f"{PREFIX}/endpoints")
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=lifetime,
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=cookie_secure(self.settings, request.secure),
        )
        response.del_cookie(TENANT_COOKIE, path=PREFIX)
        return response

    async def pick_tenant(self, request: web.Request) -> web.StreamResponse:
        """``GET /portal/tenant?tenant=…``: an operator chooses which tenant the pages show."""
        viewer = self.viewer(request)
        if viewer is None:
            return self.render(request, None, "expired.html", status=401)
        response = web.HTTPSeeOther(f"{PREFIX}/endpoints")
        tenant = request.query.get("tenant", "").strip()
        if viewer.is_operator and tenant:
            response.set_cookie(
                TENANT_COOKIE, tenant, path=PREFIX, httponly=True, samesite="Strict",
                secure=cookie_secure(self.settings, request.secure),
            )  # fmt: skip
        else:
            response.del_cookie(TENANT_COOKIE, path=PREFIX)
        raise response

    async def sign_out(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """``POST /portal/sign-out``: forget the session cookie."""
        response = self.render(request, None, "expired.html", signed_out=True)
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        response.del_cookie(TENANT_COOKIE, path=PREFIX)
        return response

    # -- the link API -----------------------------------------------------------------------

    async def create_link(self, request: web.Request) -> web.Response:
        """``POST /v1/portal-links`` ``{"tenant_id", "expires_in"}`` -> ``{"url", "expires_at"}``.

        The admin token may name any tenant, or none for an operator link; a tenant token only
        its own tenant (its tenant when none is named).
        """
        principal = self.gateway.auth.authenticate(request.headers.get("Authorization"))
        check_content_type(request.headers.get("Content-Type"))
        limit = self.settings.gateway_max_body_bytes
        check_size(request.content_length, limit)
        body = parse_json(await request.read())
        if not isinstance(body, dict):
            raise Problem(422, "invalid-field", "must be a JSON object", "body")
        unknown = sorted(set(body) - {"tenant_id", "expires_in"})
        if unknown:
            raise Problem(422, "invalid-field", "is not a known field", unknown[0])
        requested = body.get("tenant_id")
        if requested is not None and (not isinstance(requested, str) or not requested.strip()):
            raise Problem(422, "invalid-field", "must be a non-empty string", "tenant_id")
        tenant = principal.scope(requested, "tenant_id")
        expires_in = body.get("expires_in", DEFAULT_LINK_SECONDS)
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int)
            or not 1 <= expires_in <= tokens.MAX_LINK_SECONDS
        ):
            raise Problem(
                422,
                "invalid-field",
                f"must be an integer from 1 to {tokens.MAX_LINK_SECONDS} (seconds)",
                "expires_in",
            )
        expires_at = int(time.time()) + expires_in
        token = tokens.sign(self.key, tokens.LINK, tenant, expires_at)
        url = f"{link_base(self.settings, request.scheme, request.host)}{PREFIX}/?token={token}"
        stamp = datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            {"url": url, "tenant_id": tenant, "expires_at": stamp},
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    # -- rendering --------------------------------------------------------------------------

    def render(
        self,
        request: web.Request,
        viewer: Viewer | None,
        template: str,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        """``template`` rendered as an HTML page (or fragment), with the security headers."""
        html = self.templates.get_template(template).render(
            viewer=viewer,
            prefix=PREFIX,
            path=request.path,
            tenants=self.tenants() if viewer is not None and viewer.is_operator else [],
            type_groups=event_type_groups(),
            format_time=format_time,
            **context,
        )
        return web.Response(
            text=html, status=status, content_type="text/html", headers=_SECURITY_HEADERS
        )

    def not_found(self, request: web.Request, viewer: Viewer, what: str) -> web.Response:
        """The same 404 whether ``what`` does not exist or belongs to another tenant."""
        return self.render(request, viewer, "not_found.html", status=404, what=what)

    def tenants(self) -> list[str]:
        """Every tenant with an endpoint (the operator's picker)."""
        return sorted({w.tenant_id for w in self.gateway.webhooks.all()})


def _when(value: datetime | None) -> str:
    """A timestamp as the portal shows it: UTC, to the second."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mount(app: web.Application, gateway: Gateway) -> Portal:
    """Serve the portal under ``/portal/`` and ``POST /v1/portal-links`` on the gateway's app."""
    from producers.portal import activity, pages

    portal = Portal(gateway)
    app.cleanup_ctx.append(portal.lifecycle)
    app.router.add_post("/v1/portal-links", portal.create_link)
    app.router.add_get(f"{PREFIX}/", portal.open_link)
    app.router.add_get(f"{PREFIX}/tenant", portal.pick_tenant)
    app.router.add_post(f"{PREFIX}/sign-out", portal.guard(portal.sign_out, write=True))
    app.router.add_static(f"{PREFIX}/static", _HERE / "static")
    pages.add_routes(app, portal)
    activity.add_routes(app, portal)
    return portal
