"""HTTP plumbing shared by the registry's handlers: Confluent's content type and error bodies,
request body parsing, and the forwarding of writes to the elected writer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from registry import errors
from registry.errors import RegistryError
from registry.state import RegistryState, WritePlan
from registry.store import KafkaStore, NotWriterError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# What Confluent's registry accepts as a request body (clients send the first one).
ACCEPTED_BODY_TYPES = frozenset(
    {
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
    }
)
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# Set by the writer on every write answer: the topic offset the asker must have read.
OFFSET_HEADER = "X-Cpevents-Registry-Offset"
# Set on forwarded requests, so that an instance that lost the writer role never forwards again.
FORWARDED_HEADER = "X-Cpevents-Registry-Forwarded"

# Sent with every 401: clients (and browsers, curl) answer it with HTTP Basic credentials.
AUTHENTICATE_CHALLENGE = 'Basic realm="cpevents schema registry", charset="UTF-8"'

STORE_KEY = web.AppKey("store", KafkaStore)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    """``body`` as JSON with Confluent's content type."""
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
    )


def error_response(error: RegistryError) -> web.Response:
    """Confluent's error body; a 401 also says how to authenticate."""
    response = json_response(error.body(), status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = AUTHENTICATE_CHALLENGE
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a Confluent error body; nothing escapes as an HTML page."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Routing and size errors (404, 405, 413) keep their status; the code is the status.
        return error_response(RegistryError(exc.status, exc.status, exc.reason))
    except Exception as exc:
        log.exception("registry: %s %s failed", request.method, request.path)
        return error_response(errors.store_error(type(exc).__name__))


async def read_json(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and its raw bytes; 415 for a wrong content type, 413 for a body
    over the limit, 400 for malformed JSON, 422 for JSON that is not an object."""
    media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type and media_type not in ACCEPTED_BODY_TYPES:
        raise RegistryError(
            415,
            415,
            f"Unsupported Content-Type {media_type!r}: send {CONTENT_TYPE} or application/json",
        )
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise RegistryError(
            413, 413, f"Request body of {request.content_length} bytes is over {limit}"
        )
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"Request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.unprocessable("body", "a JSON object expected")
    return body, raw


class Forwarder:
    """Sends a write to the current writer and waits until this instance has read its result."""

    def __init__(self, store: KafkaStore, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def write(
        self, request: web.Request, raw: bytes, plan: Callable[[RegistryState], WritePlan]
    ) -> web.Response:
        """Run ``plan`` here if this instance writes, else forward the request to the writer
        (waiting up to the timeout for one to be elected)."""
        deadline = time.monotonic() + self._timeout
        last_problem = "no registry instance has announced itself as the writer yet"
        while True:
            try:
                response, offset = await asyncio.to_thread(self._store.write, plan)
            except NotWriterError:
                pass
            else:
                answer = json_response(response)
                if offset is not None:
                    answer.headers[OFFSET_HEADER] = str(offset)
                return answer
            if request.headers.get(FORWARDED_HEADER):
                raise errors.forwarding_error(
                    f"instance {self._store.instance_id} received a forwarded write but is not "
                    "the writer (the writer role moved); the sender retries"
                )
            writer = self._store.writer()
            if writer is not None and writer.instance != self._store.instance_id:
                forwarded = await self._forward(request, raw, writer.url)
                if isinstance(forwarded, web.Response):
                    return forwarded
                last_problem = forwarded
            if time.monotonic() > deadline:
                raise errors.forwarding_error(last_problem)
            await asyncio.sleep(0.1)  # a new writer announces itself through the topic

    async def _forward(self, request: web.Request, raw: bytes, url: str) -> web.Response | str:
        """The writer's answer, or why it could not give one (then the caller retries)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        headers = {"Content-Type": CONTENT_TYPE, FORWARDED_HEADER: self._store.instance_id}
        # The writer authenticates and authorizes the write again: the forwarded marker is
        # not proof of anything, anyone can send it.
        credentials = request.headers.get("Authorization")
        if credentials is not None:
            headers["Authorization"] = credentials
        try:
            async with self._session.request(
                request.method, url.rstrip("/") + request.path_qs, data=raw, headers=headers
            ) as reply:
                body = await reply.read()
                offset = reply.headers.get(OFFSET_HEADER)
                if reply.status == 500 and _error_code(body) == 50003:
                    return f"the writer at {url} gave up the role"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"the writer at {url} is unreachable: {type(exc).__name__}: {exc}"
        if offset is not None:
            await asyncio.to_thread(self._store.wait_for, int(offset))
        answer = web.Response(status=reply.status, body=body, content_type=CONTENT_TYPE)
        if offset is not None:
            answer.headers[OFFSET_HEADER] = offset
        return answer


FORWARDER_KEY = web.AppKey("forwarder", Forwarder)


def _error_code(body: bytes) -> object:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return document.get("error_code") if isinstance(document, dict) else None
