"""The HTTP API: the subset of Confluent Schema Registry's REST API that real clients call
(confluent-kafka's SchemaRegistryClient and serdes in Python, Go, Java, Node).

Reads are answered from this instance's state. Writes run on the elected writer; any other
instance forwards them there and, before answering, waits until its own state has read the
writer's result, so a client sees its write on whichever instance it asks next.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from registry import access, errors
from registry.auth import AuthFileWatcher, Operation
from registry.canonical import ParsedSchema, parse_schema
from registry.compatibility import Level
from registry.errors import RegistryError
from registry.http import (
    CONTENT_TYPE,
    DEFAULT_MAX_BODY_BYTES,
    FORWARDER_KEY,
    MAX_BODY_KEY,
    STORE_KEY,
    Forwarder,
    error_middleware,
    json_response,
    read_json,
)
from registry.metrics import http_metrics, watch_store
from registry.mode import Mode
from registry.params import (
    page,
    parse_id,
    parse_version,
    query_bool,
    query_int,
)
from registry.state import RegistryState, version_payload
from registry.store import KafkaStore

# Re-exported: callers and tests import these from the API module.
__all__ = ["CONTENT_TYPE", "DEFAULT_MAX_BODY_BYTES", "create_app"]

READ, WRITE = Operation.READ, Operation.WRITE


def schema_of(body: dict[str, Any]) -> ParsedSchema:
    """The schema in a register, lookup or compatibility body; 42201 when it is not valid."""
    if "schema" not in body:
        raise errors.invalid_schema("the body has no 'schema' field")
    if body.get("references"):
        raise errors.invalid_schema("schema references are not supported; inline named types")
    return parse_schema(body["schema"], body.get("schemaType") or "AVRO")


# -- handlers -------------------------------------------------------------------------------------
#
# Each handler checks the caller's permission first (a no-op without an auth file), on the
# resources Karapace uses: reading a subject needs Read on ``Subject:<name>``, changing it Write;
# the global config and mode are ``Config:``; permanent deletes and compatibility NONE also need
# the admin right (Write on ``Config:``). Forwarded writes are checked again by the writer.


def _store(request: web.Request) -> KafkaStore:
    return request.app[STORE_KEY]


async def root(_request: web.Request) -> web.Response:
    return json_response({})


async def health(_request: web.Request) -> web.Response:
    # Unauthenticated (probes carry no credentials); says nothing about the registry's content.
    return json_response({"status": "ok"})


async def schema_types(_request: web.Request) -> web.Response:
    return json_response(["AVRO"])


def _readable_schema(request: web.Request, schema_id: int) -> str:
    """The schema's text, if the caller may read one of the subjects using it. Otherwise 40403,
    as for an unknown id (Karapace's answer): ids do not disclose other tenants' schemas."""

    def read(state: RegistryState) -> tuple[str, list[str]]:
        text = state.schema_by_id(schema_id)
        return text, sorted({r.subject for r in state.versions_of_id(schema_id, True)})

    text, subjects = _store(request).read(read)
    if not access.may_read_any(request, subjects):
        raise errors.schema_not_found(f"Schema {schema_id} not found")
    return text


async def get_schema(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    return json_response({"schema": _readable_schema(request, schema_id)})


async def get_schema_text(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    return json_response(json.loads(_readable_schema(request, schema_id)))


async def get_schema_versions(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    deleted = query_bool(request.query, "deleted")
    found = _store(request).read(lambda s: s.versions_of_id(schema_id, deleted))
    subject = request.query.get("subject")
    return json_response(
        [
            {"subject": r.subject, "version": r.version}
            for r in found
            if (subject is None or r.subject == subject)
            and access.may_read_subject(request, r.subject)
        ]
    )


async def get_schema_subjects(request: web.Request) -> web.Response:
    schema_id = parse_id(request.match_info["id"])
    deleted = query_bool(request.query, "deleted")
    found = _store(request).read(lambda s: s.versions_of_id(schema_id, deleted))
    names = {r.subject for r in found if access.may_read_subject(request, r.subject)}
    return json_response(sorted(names))


async def list_subjects(request: web.Request) -> web.Response:
    query = request.query
    names = _store(request).read(
        lambda s: s.subjects(query_bool(query, "deleted"), query_bool(query, "deleted_only"))
    )
    prefix = query.get("subjectPrefix")
    names = [
        name
        for name in names
        if (not prefix or name.startswith(prefix)) and access.may_read_subject(request, name)
    ]
    return json_response(page(names, query_int(query, "offset", 0), query_int(query, "limit", -1)))


async def list_versions(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, READ, subject)
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
    access.require_subject(request, READ, subject)
    version = parse_version(request.match_info["version"])
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.version(subject, version, deleted))
    return json_response(version_payload(record))


async def get_version_schema(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, READ, subject)
    version = parse_version(request.match_info["version"])
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.version(subject, version, deleted))
    return json_response(json.loads(record.schema))


async def lookup(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, READ, subject)
    body, _ = await read_json(request)
    schema = schema_of(body)
    deleted = query_bool(request.query, "deleted")
    record = _store(request).read(lambda s: s.lookup(subject, schema, deleted))
    return json_response(version_payload(record))


async def register(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, WRITE, subject)
    body, raw = await read_json(request)
    schema = schema_of(body)
    return await request.app[FORWARDER_KEY].write(
        request, raw, lambda s: s.plan_register(subject, schema)
    )


def _require_delete(request: web.Request, subject: str) -> bool:
    access.require_subject(request, WRITE, subject)
    permanent = query_bool(request.query, "permanent")
    if permanent:
        access.require_admin(request, f"permanently deleting from subject '{subject}'")
    return permanent


async def delete_subject(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    permanent = _require_delete(request, subject)
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_subject(subject, permanent)
    )


async def delete_version(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    permanent = _require_delete(request, subject)
    version = parse_version(request.match_info["version"])
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_version(subject, version, permanent)
    )


def _subject_of(request: web.Request) -> str | None:
    return request.match_info.get("subject")


def _require_scope(request: web.Request, operation: Operation) -> str | None:
    """The subject of a /config or /mode request, after checking ``operation`` on it (on
    ``Config:`` for the global one)."""
    subject = _subject_of(request)
    if subject is None:
        access.require_config(request, operation)
    else:
        access.require_subject(request, operation, subject)
    return subject


async def get_config(request: web.Request) -> web.Response:
    subject = _require_scope(request, READ)

    def level(state: RegistryState) -> Level:
        if subject is None or query_bool(request.query, "defaultToGlobal"):
            return state.level(subject)
        own = state.subject_level(subject)
        if own is None:
            raise errors.subject_config_not_found(subject)
        return own

    return json_response({"compatibilityLevel": _store(request).read(level).value})


async def put_config(request: web.Request) -> web.Response:
    subject = _require_scope(request, WRITE)
    body, raw = await read_json(request)
    level = Level.parse(body.get("compatibility"))
    if level is Level.NONE:
        # NONE lets any schema replace any other: consumers stop being able to read.
        access.require_admin(request, "setting compatibility NONE")
    return await request.app[FORWARDER_KEY].write(
        request, raw, lambda s: s.plan_set_level(subject, level)
    )


async def delete_config(request: web.Request) -> web.Response:
    subject = _require_scope(request, WRITE)
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_level(subject)
    )


async def get_mode(request: web.Request) -> web.Response:
    subject = _require_scope(request, READ)

    def mode(state: RegistryState) -> Mode:
        if subject is None or query_bool(request.query, "defaultToGlobal"):
            return state.mode(subject)
        own = state.subject_mode(subject)
        if own is None:
            raise errors.subject_mode_not_found(subject)
        return own

    return json_response({"mode": _store(request).read(mode).value})


async def put_mode(request: web.Request) -> web.Response:
    subject = _require_scope(request, WRITE)
    body, raw = await read_json(request)
    mode = Mode.parse(body.get("mode"))
    return await request.app[FORWARDER_KEY].write(
        request, raw, lambda s: s.plan_set_mode(subject, mode)
    )


async def delete_mode(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, WRITE, subject)
    return await request.app[FORWARDER_KEY].write(
        request, b"", lambda s: s.plan_delete_mode(subject)
    )


async def check_compatibility(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    access.require_subject(request, READ, subject)
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
    # topic-name strategy", which is what this registry supports. Any authenticated user
    # gets it (clients send their credentials with it like with any other request).
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
    auth: AuthFileWatcher | None = None,
) -> web.Application:
    """The registry's aiohttp application over a started ``store``; ``auth``: the users and
    permissions every request is checked against (None: no authentication, loopback use)."""
    app = web.Application(
        # The metrics middleware first: it times every answer and serves /metrics unauthenticated.
        middlewares=[http_metrics().middleware, error_middleware, access.auth_middleware],
        client_max_size=max_body_bytes,
    )
    watch_store(store)
    app[STORE_KEY] = store
    app[MAX_BODY_KEY] = max_body_bytes
    if auth is not None:
        app[access.AUTH_KEY] = auth
    forwarder = Forwarder(store, forward_timeout)
    app[FORWARDER_KEY] = forwarder

    async def close_forwarder(_app: web.Application) -> None:
        await forwarder.close()

    app.on_cleanup.append(close_forwarder)
    r = app.router
    r.add_get("/", root)
    r.add_get("/_health", health)
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
    for path in ("/mode", "/mode/{subject}"):
        r.add_get(path, get_mode)
        r.add_put(path, put_mode)
    r.add_delete("/mode/{subject}", delete_mode)
    r.add_post("/compatibility/subjects/{subject}/versions", check_compatibility)
    r.add_post("/compatibility/subjects/{subject}/versions/{version}", check_compatibility)
    r.add_get("/associations/resources/{namespace}/{name}", associations)
    return app
