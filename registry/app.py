"""The HTTP API: the subset of Confluent Schema Registry's REST API that real clients call
(confluent-kafka's SchemaRegistryClient and serdes in Python, Go, Java, Node).

Reads are answered from this instance's state. Writes run on the elected writer; any other
instance forwards them there and, before answering, waits until its own state has read the
writer's result, so a client sees its write on whichever instance it asks next.
"""

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
from registry.canonical import ParsedSchema, parse_schema
from registry.compatibility import Level
from registry.errors import RegistryError
from registry.params import (
    page,
    parse_id,
    parse_version,
    query_bool,
    query_int,
)
from registry.state import RegistryState, WritePlan, version_payload
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

STORE_KEY = web.AppKey("store", KafkaStore)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
    )


def error_response(error: RegistryError) -> web.Response:
    return json_response(error.body(), status=error.status)


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


def schema_of(body: dict[str, Any]) -> ParsedSchema:
    """The schema in a register, lookup or compatibility body; 42201 when it is not valid."""
    if "schema" not in body:
        raise errors.invalid_schema("the body has no 'schema' field")
    if body.get("references"):
        raise errors.invalid_schema("schema references are not supported; inline named types")
    return parse_schema(body["schema"], body.get("schemaType") or "AVRO")


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


# -- handlers -------------------------------------------------------------------------------------


def _store(request: web.Request) -> KafkaStore:
    return request.app[STORE_KEY]


async def root(_request: web.Request) -> web.Response:
    return json_response({})


async def schema_types(_request: web.Request) -> web.Response:
    return json_response(["AVRO"])


async def get_schema(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    text = _store(request).read(lambda s: s.schema_by_id(schema_id))
    return json_response({"schema": text})


async def get_schema_text(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    return json_response(json.loads(_store(request).read(lambda s: s.schema_by_id(schema_id))))


async def get_schema_versions(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    deleted = query_bool(request.query, "deleted")
    found = _store(request).read(lambda s: s.versions_of_id(schema_id, deleted))
    subject = request.query.get("subject")
    return json_response(
        [
            {"subject": r.subject, "version": r.version}
            for r in found
            if subject is None or r.subject == subject
        ]
    )


async def get_schema_subjects(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    deleted = query_bool(request.query, "deleted")
    found = _store(request).read(lambda s: s.versions_of_id(schema_id, deleted))
    return json_response(sorted({r.subject for r in found}))


async def list_subjects(request: web.Request) -> web.Response:
    query = request.query
    names = _store(request).read(
        lambda s: s.subjects(query_bool(query, "deleted"), query_bool(query, "deleted_only"))
    )
    prefix = query.get("subjectPrefix")
    if prefix:
        names = [name for name in names if name.startswith(prefix)]
    return json_response(page(names, query_int(query, "offset", 0), query_int(query, "limit", -1)))


async def list_versions(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    query = request.query
    deleted = query_bool(query, "deleted") or query_bool(query, "deleted_only")
    found = _store(request).read(lambda s: s.versions(subject, deleted))
    if query_bool(query, "deleted_only"):
        found = [r for r in found if r.deleted]
    versions = [r.version for r in found]
    offset, limit = query_int(query, "offset", 0), query_int(query, "limit", -1)
    versions = versions[max(offset, 0) :]
    return json_response(versions if limit < 0 else versions[:limit])


async def get_version(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    version = parse_version(request.match_info["version"])
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.version(subject, version, deleted))
    return json_response(version_payload(record))


async def get_version_schema(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    version = parse_version(request.match_info["version"])
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.version(subject, version, deleted))
    return json_response(json.loads(record.schema))


async def lookup(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    body, _ = await read_json(request)
    schema = schema_of(body)
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.lookup(subject, schema, deleted))
    return json_response(version_payload(record))


async def register(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    body, raw = await read_json(request)
    schema = schema_of(body)
    return await request.app[FORWARDER_KEY].write(
        request, raw, lambda s: s.plan_register(subject, schema)
    )


async def delete_subject(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    permanent = query_bool(request.query, "permanent")
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_subject(subject, permanent)
    )


async def delete_version(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    version = parse_version(request.match_info["version"])
    permanent = query_bool(request.query, "permanent")
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_version(subject, version, permanent)
    )


def _subject_of(request: web.Request) -> str | None:
    return request.match_info.get("subject")


async def get_config(request: web.Request) -> web.Response:
    subject = _subject_of(request)

    def level(state: RegistryState) -> Level:
        if subject is None or query_bool(request.query, "defaultToGlobal"):
            return state.level(subject)
        own = state.subject_level(subject)
        if own is None:
            raise errors.subject_config_not_found(subject)
        return own

    return json_response({"compatibilityLevel": _store(request).read(level).value})


async def put_config(request: web.Request) -> web.Response:
    subject = _subject_of(request)
    body, raw = await read_json(request)
    level = Level.parse(body.get("compatibility"))
    return await request.app[FORWARDER_KEY].write(
        request, raw, lambda s: s.plan_set_level(subject, level)
    )


async def delete_config(request: web.Request) -> web.Response:
    subject = _subject_of(request)
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_level(subject)
    )


async def check_compatibility(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    text = request.match_info.get("version")
    version = parse_version(text) if text is not None else None
    body, _ = await read_json(request)
    schema = schema_of(body)
    problems = _store(request).read(lambda s: s.compatibility(subject, schema, version))
    answer: dict[str, Any] = {"is_compatible": not problems}
    if query_bool(request.query, "verbose"):
        answer["messages"] = problems
    return json_response(answer)


async def associations(request: web.Request) -> web.Response:
    # confluent-kafka >= 2.14 asks this before choosing a subject; 404 means "use the
    # topic-name strategy", which is what this registry supports.
    raise RegistryError(
        404,
        404,
        f"No associations for resource '{request.match_info['name']}' "
        "(this registry does not support associations)",
    )


def create_app(
    store: KafkaStore,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    forward_timeout: float = 30.0,
) -> web.Application:
    """The registry's aiohttp application over a started ``store``."""
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body_bytes)
    app[STORE_KEY] = store
    app[MAX_BODY_KEY] = max_body_bytes
    forwarder = Forwarder(store, forward_timeout)
    app[FORWARDER_KEY] = forwarder

    async def close_forwarder(_app: web.Application) -> None:
        await forwarder.close()

    app.on_cleanup.append(close_forwarder)
    r = app.router
    r.add_get("/", root)
    r.add_get("/schemas/types", schema_types)
    r.add_get("/schemas/ids/{id}", get_schema)
    r.add_get("/schemas/ids/{id}/schema", get_schema_text)
    r.add_get("/schemas/ids/{id}/versions", get_schema_versions)
    r.add_get("/schemas/ids/{id}/subjects", get_schema_subjects)
    r.add_get("/subjects", list_subjects)
    r.add_post("/subjects/{subject}", lookup)
    r.add_delete("/subjects/{subject}", delete_subject)
    r.add_get("/subjects/{subject}/versions", list_versions)
    r.add_post("/subjects/{subject}/versions", register)
    r.add_get("/subjects/{subject}/versions/{version}", get_version)
    r.add_delete("/subjects/{subject}/versions/{version}", delete_version)
    r.add_get("/subjects/{subject}/versions/{version}/schema", get_version_schema)
    for path in ("/config", "/config/{subject}"):
        r.add_get(path, get_config)
        r.add_put(path, put_config)
        r.add_delete(path, delete_config)
    r.add_post("/compatibility/subjects/{subject}/versions", check_compatibility)
    r.add_post("/compatibility/subjects/{subject}/versions/{version}", check_compatibility)
    r.add_get("/associations/resources/{namespace}/{name}", associations)
    return app
