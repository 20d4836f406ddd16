"""The aiohttp application: routes, handlers and the problem middleware.

Handlers only glue the pure parts (auth, validation, webhook_ops, queries) to the Kafka I/O
(stores, AsyncProducer); a bad request is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException

from plumbing import tracing
from plumbing.http_server import ServerLimits, start_server
from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.clients import producer_config
from plumbing.kafka.produce import PublishError, Record
from plumbing.kafka.view import ViewError
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from producers.gateway import openapi
from producers.gateway.auth import Principal, TokenAuth
from producers.gateway.delivery_index import DeliveryFilter
from producers.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from producers.gateway.idempotency import Answer, IdempotencyStore, check_key, fingerprint
from producers.gateway.payloads import PayloadValidator, event_type_list
from producers.gateway.problems import PROBLEM_CONTENT_TYPE, Problem, not_found
from producers.gateway.queries import tenant_webhooks
from producers.gateway.redrive import DeliveryRedriver, NotDeadLettered
from producers.gateway.stores import DeliveryStore, WebhookStore
from producers.gateway.validation import (
    check_content_type,
    check_size,
    parse_delivery_query,
    parse_events,
    parse_json,
    parse_webhook_create,
    parse_webhook_update,
)
from producers.gateway.versions import KeyedLocks, check_if_match, etag
from producers.gateway.webhook_ops import (
    create_webhook,
    reencrypted,
    rotate_secret,
    update_webhook,
    with_secret,
)
from producers.observability import counting_refusals, producer_metrics, traced_request
from producers.on_demand import OnDemand
from schemas.delivery_records import DeliveryStatus
from schemas.event import Event
from schemas.secrets import SecretBox
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(problem: Problem) -> web.Response:
    return web.json_response(
        problem.body(),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a problem document; nothing internal leaks into it."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        slug = exc.reason.lower().replace(" ", "-")
        field = "body" if exc.status == 413 else None
        return problem_response(Problem(exc.status, slug, exc.reason, field, headers))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "internal-error", "internal error"))


class Gateway:
    """The gateway's state: auth, secret box, producer and views. ``app()`` serves it."""

    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        *,
        reader_idle: float | None = None,
    ) -> None:
        """``reader_idle``: seconds without a request after which the attempt-log index (and
        the portal's feed) stop reading their topics (see producers/on_demand.py); default
        ``CPEVENTS_GATEWAY_READER_IDLE``."""
        if reader_idle is None:
            reader_idle = settings.gateway_reader_idle
        if settings.secret_key is None:
            raise ValueError("CPEVENTS_SECRET_KEY: required by the gateway (`cpevents keygen`)")
        self.settings = settings
        self.auth = TokenAuth.from_settings(settings.tenant_tokens, settings.admin_token)
        self.box = SecretBox(settings.secret_key.get_secret_value())
        self.serde = serde or serde_for(settings)
        self.overlap = timedelta(seconds=settings.secret_rotation_overlap)
        # Writes of one webhook (and creations for one tenant) queue here: see versions.py.
        self._webhook_locks = KeyedLocks()
        self._tenant_locks = KeyedLocks()
        self._producer: AsyncProducer | None = None
        self._webhooks: WebhookStore | None = None
        # The attempt-log index runs only while requests need it (issue 20): not in the path.
        self.reader_idle = reader_idle
        self._deliveries: OnDemand[DeliveryStore] = OnDemand(
            "attempt log index", self._start_deliveries, DeliveryStore.stop, reader_idle
        )
        self._redriver: DeliveryRedriver | None = None
        self.metrics = producer_metrics()  # /metrics: request times, events accepted, refused
        self._idempotency: IdempotencyStore | None = None
        # The event-type catalog (issue 18): opt-in payload schemas, built once here.
        self._payloads = PayloadValidator()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Kafka and load the views (returns once they caught up)."""
        self._producer = AsyncProducer(producer_config(self.settings))
        self._webhooks = WebhookStore(self.settings, self.serde, self._producer)
        self._redriver = DeliveryRedriver(self.settings, self.serde, self._producer)
        self._idempotency = IdempotencyStore(self.settings, self._producer)
        await asyncio.gather(self._webhooks.start(), self._idempotency.start())

    async def _start_deliveries(self) -> DeliveryStore:
        store = DeliveryStore(self.settings, self.serde)
        try:
            await store.start()
        except BaseException:
            await asyncio.to_thread(store.stop)
            raise
        return store

    async def stop(self) -> None:
        await self._deliveries.close()
        for store in (self._webhooks, self._idempotency):
            if store is not None:
                await asyncio.to_thread(store.stop)
        if self._producer is not None:
            await self._producer.close()

    def app(self) -> web.Application:
        """The aiohttp application (starts and stops the gateway with it)."""
        app = web.Application(
            client_max_size=self.settings.gateway_max_body_bytes,
            # The metrics middleware outermost: it times the final answer and serves /metrics.
            middlewares=[self.metrics.http.middleware, problem_middleware],
        )

        async def lifecycle(_: web.Application) -> Any:
            await self.start()
            yield
            await self.stop()

        app.cleanup_ctx.append(lifecycle)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.health)
        app.router.add_post("/v1/events", counting_refusals(self.post_events, self.metrics))
        app.router.add_get("/v1/webhooks", self.list_webhooks)
        app.router.add_post("/v1/webhooks", self.create_webhook)
        app.router.add_get("/v1/webhooks/{id}", self.get_webhook)
        app.router.add_patch("/v1/webhooks/{id}", self.update_webhook)
        app.router.add_delete("/v1/webhooks/{id}", self.delete_webhook)
        app.router.add_post("/v1/webhooks/{id}/rotate-secret", self.rotate_webhook_secret)
        app.router.add_get("/v1/deliveries", self.list_deliveries)
        app.router.add_get("/v1/event-types", self.list_event_types)
        app.router.add_post("/v1/deliveries/{id}/retry", self.retry_delivery)
        from producers.portal import mount  # the tenant portal (issue 17): /portal/, portal links

        mount(app, self)
        return app

    @property
    def webhooks(self) -> WebhookStore:
        if self._webhooks is None:
            raise RuntimeError("gateway not started")
        return self._webhooks

    async def deliveries(self) -> DeliveryStore:
        """The attempt-log index, started (and caught up with the topic) if it was idle; a
        503 problem if Kafka does not let it read the topic."""
        if self._webhooks is None:
            raise RuntimeError("gateway not started")
        try:
            return await self._deliveries.get()
        except (KafkaException, ViewError, TimeoutError) as exc:
            log.warning("attempt log index could not start: %s", exc)
            raise Problem(503, "kafka-unavailable", f"attempt log unreadable: {exc}") from None

    # -- helpers -----------------------------------------------------------------------------

    def _principal(self, request: web.Request) -> Principal:
        return self.auth.authenticate(request.headers.get("Authorization"))

    async def _json_body(self, request: web.Request) -> Any:
        check_content_type(request.headers.get("Content-Type"))
        limit = self.settings.gateway_max_body_bytes
        check_size(request.content_length, limit)
        timeout = self.settings.gateway_body_timeout
        try:
            # A body trickling in byte by byte must not hold the connection (slowloris).
            async with asyncio.timeout(timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Problem(413, "body-too-large", f"body exceeds {limit} bytes", "body") from None
        except TimeoutError:
            raise Problem(
                408, "body-timeout", f"body not received within {timeout:g}s", "body"
            ) from None
        check_size(len(body), limit)
        return parse_json(body)

    def _tenant_query(self, request: web.Request, principal: Principal) -> str | None:
        requested = request.query.get("tenant_id") or None
        return principal.scope(requested, "tenant_id")

    def _own_webhook(self, request: web.Request, principal: Principal) -> Webhook:
        webhook_id = request.match_info["id"]
        webhook = self.webhooks.get(webhook_id)
        if webhook is None or not principal.can_see(webhook.tenant_id):
            raise not_found("webhook", webhook_id)
        return webhook

    # -- handlers ----------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    async def health(self, request: web.Request) -> web.Response:
        """200 while every view reads its topic; 503 naming each view that does not (its data
        may be stale while its reader restarts)."""
        if self._webhooks is None:
            return web.json_response({"status": "starting"}, status=503)
        # The attempt-log index counts only while it runs (it is stopped while nobody asks).
        stores = (self._webhooks, self._deliveries.current)
        failing = {
            topic: error
            for topic, error in (store.health() for store in stores if store is not None)
            if error is not None
        }
        if failing:
            return web.json_response({"status": "unhealthy", "views": failing}, status=503)
        return web.json_response({"status": "ok"})

    async def post_events(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        data = await self._json_body(request)
        events = parse_events(data)
        self._payloads.check(events, isinstance(data, list))
        batch = isinstance(data, list)
        for index, event in enumerate(events):
            principal.check_write(event.tenant_id, f"[{index}].tenant_id" if batch else "tenant_id")
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            answer = await self._publish(events, batch, request)
        elif self._idempotency is None:
            raise RuntimeError("gateway not started")
        else:
            # Scoped by the caller: a tenant's keys never meet another tenant's (admin: "").
            answer = await self._idempotency.run_once(
                principal.tenant_id or "",
                check_key(key),
                fingerprint(data),
                lambda: self._publish(events, batch, request),
            )
        return web.json_response(answer.body, status=answer.status)

    async def _publish(self, events: list[Event], batch: bool, request: web.Request) -> Answer:
        try:
            # Every event is encoded (and size-checked) before any is sent: a refused batch
            # writes nothing.
            records = await asyncio.to_thread(self._records, events, batch)
            send = self._producer_or_fail().send_batch
            if tracing.enabled:  # one span, continuing the caller's traceparent
                await traced_request(send, records, request.headers, [e.id for e in events])
            else:
                await send(records)
        except PublishError as exc:
            raise Problem(503, "kafka-unavailable", str(exc)) from None
        self.metrics.accepted.inc(len(events))  # written (an idempotent replay is not)
        return Answer(202, {"ids": [e.id for e in events]})

    def _records(self, events: list[Event], batch: bool) -> list[Record]:
        topics = self.settings.topics
        limit = self.settings.max_event_bytes
        records = []
        for index, event in enumerate(events):
            topic = topics.for_event_type(event.type)
            try:
                value = self.serde.events.encode(event, topic)
            except Exception as exc:  # registry unreachable or refusing
                raise Problem(503, "registry-unavailable", type(exc).__name__) from None
            if len(value) > limit:  # the encoded bytes exist already: checking is free
                field = f"[{index}].payload" if batch else "payload"
                raise Problem(
                    413,
                    "event-too-large",
                    f"the event encodes to {len(value)} bytes, over the limit of {limit} bytes "
                    "(JSON escaping makes <, > and & six bytes each)",
                    field,
                )
            records.append(Record(topic, event.tenant_id.encode(), value))
        return records

    def _producer_or_fail(self) -> AsyncProducer:
        if self._producer is None:
            raise RuntimeError("gateway not started")
        return self._producer

    async def list_event_types(self, request: web.Request) -> web.Response:
        """The event-type catalog: subsystem, topic, description and payload schema per type."""
        self._principal(request)
        return web.json_response({"event_types": event_type_list(self.settings.topics)})

    async def list_webhooks(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        tenant = self._tenant_query(request, principal)
        webhooks = tenant_webhooks(self.webhooks.all(), tenant)
        return web.json_response({"webhooks": [w.to_json_dict() for w in webhooks]})

    async def create_webhook(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        create = parse_webhook_create(await self._json_body(request))
        tenant = principal.scope(create.tenant_id, "tenant_id")
        if tenant is None:
            raise Problem(422, "invalid-field", "is required with the admin token", "tenant_id")
        cap = self.settings.max_webhooks_per_tenant
        # Creations of one tenant queue, so concurrent ones cannot pass the cap together.
        async with self._tenant_locks.hold(tenant):
            if self.webhooks.count_for(tenant) >= cap:
                raise Problem(
                    422,
                    "too-many-webhooks",
                    f"tenant {tenant} has {cap} webhooks, the limit "
                    "(CPEVENTS_MAX_WEBHOOKS_PER_TENANT); delete one first",
                    "tenant_id",
                )
            webhook, secret = create_webhook(create, tenant, self.box, utc_now())
            await self._put(webhook)
        return web.json_response(
            with_secret(webhook, secret), status=201, headers={"ETag": etag(webhook)}
        )

    async def get_webhook(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        webhook = self._own_webhook(request, principal)
        return web.json_response(webhook.to_json_dict(), headers={"ETag": etag(webhook)})

    @asynccontextmanager
    async def _writing(self, request: web.Request, principal: Principal) -> AsyncIterator[Webhook]:
        """Hold the webhook's write lock and yield its current version (after the writes queued
        before this one landed), once ``If-Match`` (if sent) names that version."""
        self._own_webhook(request, principal)  # 404 without queueing
        async with self._webhook_locks.hold(request.match_info["id"]):
            # Re-read under the lock: a write before ours returned only once our view showed it.
            webhook = self._own_webhook(request, principal)
            check_if_match(request.headers.get("If-Match"), webhook)
            yield webhook

    async def update_webhook(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        self._own_webhook(request, principal)  # 404 before reading the body
        changes = parse_webhook_update(await self._json_body(request))
        async with self._writing(request, principal) as webhook:
            updated = update_webhook(webhook, changes, utc_now(), self.box)
            await self._put(updated)
        return web.json_response(updated.to_json_dict(), headers={"ETag": etag(updated)})

    async def delete_webhook(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        async with self._writing(request, principal) as webhook:
            try:
                await self.webhooks.delete(webhook.id)
            except PublishError as exc:
                raise Problem(503, "kafka-unavailable", str(exc)) from None
        return web.Response(status=204)

    async def rotate_webhook_secret(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        async with self._writing(request, principal) as webhook:
            rotated, secret = rotate_secret(
                webhook, self.box, self.overlap, utc_now(), self.settings.max_active_secrets
            )
            await self._put(rotated)
        return web.json_response(with_secret(rotated, secret), headers={"ETag": etag(rotated)})

    async def _put(self, webhook: Webhook) -> None:
        # Every write also moves the secrets to the first CPEVENTS_SECRET_KEY (key rotation).
        stored = reencrypted(webhook, self.box)
        try:
            await self.webhooks.put(stored)
        except PublishError as exc:
            raise Problem(503, "kafka-unavailable", str(exc)) from None

    async def list_deliveries(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        query = parse_delivery_query(request.query)
        tenant = principal.scope(query.tenant_id, "tenant_id")
        where = DeliveryFilter(tenant, query.event_id, query.webhook_id, query.status)
        page = (await self.deliveries()).page(where, query.limit, query.cursor)
        return web.json_response(
            {
                "deliveries": [d.to_json_dict() for d in page.deliveries],
                "next_cursor": page.next_cursor,
            }
        )

    async def retry_delivery(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        delivery_id = request.match_info["id"]
        delivery = (await self.deliveries()).get(delivery_id)
        if delivery is None or not principal.can_see(delivery.tenant_id):
            raise not_found("delivery", delivery_id)
        if delivery.status != DeliveryStatus.DEAD_LETTERED:
            raise Problem(
                409, "not-dead-lettered", f"delivery is {delivery.status}, not dead_lettered", "id"
            )
        if self._redriver is None:
            raise RuntimeError("gateway not started")
        try:
            await self._redriver.redrive(delivery_id, delivery.webhook_id)
        except NotDeadLettered as exc:
            raise Problem(409, "not-dead-lettered", str(exc), "id") from None
        except (PublishError, TimeoutError) as exc:  # not written, or the DLT scan timed out
            raise Problem(503, "kafka-unavailable", str(exc)) from None
        return web.json_response({"id": delivery_id, "requeued": True}, status=202)


async def serve(
    settings: Settings, ready: asyncio.Event | None = None, serde: Serde | None = None
) -> None:
    """Run the gateway on ``settings.gateway_host:gateway_port`` until cancelled.

    Connections are limited (header and keep-alive timeouts, a connection cap:
    ``plumbing.http_server``) so slow clients cannot hold the gateway.
    """
    limits = ServerLimits(
        header_timeout=settings.gateway_header_timeout,
        keepalive_timeout=settings.gateway_keepalive_timeout,
        max_connections=settings.gateway_max_connections,
    )
    app = Gateway(settings, serde).app()
    runner, site = await start_server(app, settings.gateway_host, settings.gateway_port, limits)
    log.info("gateway listening on %s:%s", settings.gateway_host, site.port)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
