"""The registry's HTTP edge: bad input gets Confluent's status and error code, and the
registry keeps serving; query booleans in either case; the associations probe is a 404; modes
and the health probe without an auth file."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from registry.app import CONTENT_TYPE, DEFAULT_MAX_BODY_BYTES
from registry.server import RegistryThread
from tests.fixtures_registry import registry_settings
from tests.http_probes import slow_header_client

SCHEMA = json.dumps({"type": "record", "name": "H", "fields": [{"name": "a", "type": "long"}]})


@pytest.fixture
async def http(registry_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=registry_url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    content_type: str = CONTENT_TYPE,
) -> tuple[int, Any]:
    payload = data if data is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type} if payload is not None else {}
    async with http.request(method, path, data=payload, headers=headers) as reply:
        assert reply.content_type in (CONTENT_TYPE, "application/json"), reply.content_type
        return reply.status, await reply.json(content_type=None)


async def still_serving(http: aiohttp.ClientSession) -> None:
    status, subjects = await call(http, "GET", "/subjects")
    assert status == 200 and isinstance(subjects, list)


def subject() -> str:
    return f"http-{uuid.uuid4().hex[:8]}-value"


@pytest.mark.parametrize(
    "schema",
    ["{not json", "", '{"type":"record","name":"R"}', '{"type":"bogus"}', 42],
)
async def test_invalid_schema_is_42201(http: aiohttp.ClientSession, schema: object) -> None:
    status, body = await call(http, "POST", f"/subjects/{subject()}/versions", {"schema": schema})
    assert (status, body["error_code"]) == (422, 42201)
    assert body["message"].startswith("Invalid schema")
    await still_serving(http)


async def test_unknown_subject_version_and_id(http: aiohttp.ClientSession) -> None:
    missing = subject()
    for method, path, body in [
        ("GET", f"/subjects/{missing}/versions", None),
        ("GET", f"/subjects/{missing}/versions/latest", None),
        ("POST", f"/subjects/{missing}", {"schema": SCHEMA}),
        ("DELETE", f"/subjects/{missing}", None),
    ]:
        status, answer = await call(http, method, path, body)
        assert (status, answer["error_code"]) == (404, 40401), (method, path)
    status, answer = await call(http, "GET", "/schemas/ids/987654")
    assert (status, answer["error_code"]) == (404, 40403)

    known = subject()
    status, registered = await call(http, "POST", f"/subjects/{known}/versions", {"schema": SCHEMA})
    assert status == 200
    status, answer = await call(http, "GET", f"/subjects/{known}/versions/9")
    assert (status, answer["error_code"]) == (404, 40402)
    status, answer = await call(http, "GET", f"/subjects/{known}/versions/zero")
    assert (status, answer["error_code"]) == (422, 42202)
    other = json.dumps({"type": "record", "name": "H2", "fields": []})
    status, answer = await call(http, "POST", f"/subjects/{known}", {"schema": other})
    assert (status, answer["error_code"]) == (404, 40403)
    status, answer = await call(http, "GET", f"/schemas/ids/{registered['id']}?subject={known}")
    assert status == 200 and json.loads(answer["schema"])["name"] == "H"
    await still_serving(http)


async def test_wrong_content_type_is_415(http: aiohttp.ClientSession) -> None:
    status, body = await call(
        http,
        "POST",
        f"/subjects/{subject()}/versions",
        data=f"schema={SCHEMA}".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert (status, body["error_code"]) == (415, 415)
    await still_serving(http)


async def test_malformed_json_body_is_400_and_a_non_object_is_422(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await call(http, "POST", f"/subjects/{subject()}/versions", data=b"{nope")
    assert (status, body["error_code"]) == (400, 400)
    status, body = await call(http, "POST", f"/subjects/{subject()}/versions", data=b"[1]")
    assert (status, body["error_code"]) == (422, 422)
    await still_serving(http)


async def test_huge_body_is_413(http: aiohttp.ClientSession) -> None:
    huge = json.dumps({"schema": "x" * (DEFAULT_MAX_BODY_BYTES + 1)}).encode()
    status, body = await call(http, "POST", f"/subjects/{subject()}/versions", data=huge)
    assert (status, body["error_code"]) == (413, 413)
    await still_serving(http)


async def test_unknown_route_and_method_keep_confluent_bodies(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/nothing/here")
    assert (status, body["error_code"]) == (404, 404)
    status, body = await call(http, "PATCH", "/subjects")
    assert (status, body["error_code"]) == (405, 405)


async def test_associations_probe_is_404(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/associations/resources/-/some.topic")
    assert status == 404 and body["error_code"] == 404


@pytest.mark.parametrize(("true", "false"), [("true", "false"), ("True", "False")])
async def test_query_booleans_in_either_case(
    http: aiohttp.ClientSession, true: str, false: str
) -> None:
    name = subject()
    await call(http, "POST", f"/subjects/{name}/versions", {"schema": SCHEMA})
    status, _ = await call(http, "DELETE", f"/subjects/{name}?permanent={false}")
    assert status == 200
    _, listed = await call(http, "GET", f"/subjects?deleted={false}")
    assert name not in listed
    _, listed = await call(http, "GET", f"/subjects?deleted={true}")
    assert name in listed
    status, _ = await call(http, "GET", f"/subjects/{name}/versions/1?deleted={true}")
    assert status == 200
    status, _ = await call(http, "GET", f"/subjects/{name}/versions/1?deleted={false}")
    assert status == 404
    status, body = await call(
        http, "POST", f"/subjects/{name}/versions?normalize={false}", {"schema": SCHEMA}
    )
    assert status == 200 and body["id"] >= 1
    status, versions = await call(http, "DELETE", f"/subjects/{name}/versions/1?permanent={true}")
    assert (status, versions) == (200, 1)


async def test_config_endpoints(http: aiohttp.ClientSession) -> None:
    name = subject()
    status, body = await call(http, "GET", "/config")
    assert (status, body) == (200, {"compatibilityLevel": "BACKWARD"})
    status, body = await call(http, "GET", f"/config/{name}")
    assert (status, body["error_code"]) == (404, 40408)
    status, body = await call(http, "GET", f"/config/{name}?defaultToGlobal=true")
    assert (status, body) == (200, {"compatibilityLevel": "BACKWARD"})
    status, body = await call(http, "PUT", f"/config/{name}", {"compatibility": "full"})
    assert (status, body) == (200, {"compatibility": "FULL"})
    status, body = await call(http, "PUT", f"/config/{name}", {"compatibility": "sideways"})
    assert (status, body["error_code"]) == (422, 42203)
    status, body = await call(http, "GET", f"/config/{name}")
    assert (status, body) == (200, {"compatibilityLevel": "FULL"})
    status, body = await call(http, "DELETE", f"/config/{name}")
    assert (status, body) == (200, {"compatibilityLevel": "FULL"})


async def test_compatibility_endpoint_with_verbose_messages(http: aiohttp.ClientSession) -> None:
    name = subject()
    await call(http, "POST", f"/subjects/{name}/versions", {"schema": SCHEMA})
    breaking = json.dumps(
        {"type": "record", "name": "H", "fields": [{"name": "a", "type": "boolean"}]}
    )
    status, body = await call(
        http,
        "POST",
        f"/compatibility/subjects/{name}/versions/latest?verbose=true",
        {"schema": breaking},
    )
    assert status == 200 and body["is_compatible"] is False and body["messages"]
    status, body = await call(
        http, "POST", f"/compatibility/subjects/{name}/versions", {"schema": SCHEMA}
    )
    assert (status, body) == (200, {"is_compatible": True})


async def test_mode_endpoints_without_an_auth_file(http: aiohttp.ClientSession) -> None:
    """Dev mode (loopback, no auth file): modes work and nothing asks for credentials."""
    name = subject()
    assert await call(http, "GET", "/_health") == (200, {"status": "ok"})
    assert await call(http, "GET", "/mode") == (200, {"mode": "READWRITE"})
    status, body = await call(http, "GET", f"/mode/{name}")
    assert (status, body["error_code"]) == (404, 40409)
    assert await call(http, "PUT", f"/mode/{name}", {"mode": "readonly"}) == (
        200,
        {"mode": "READONLY"},
    )
    status, body = await call(http, "POST", f"/subjects/{name}/versions", {"schema": SCHEMA})
    assert (status, body["error_code"]) == (422, 42205)
    status, body = await call(http, "PUT", f"/mode/{name}", {"mode": "IMPORT"})
    assert (status, body["error_code"]) == (422, 42204)
    assert await call(http, "DELETE", f"/mode/{name}") == (200, {"mode": "READONLY"})
    status, _ = await call(http, "POST", f"/subjects/{name}/versions", {"schema": SCHEMA})
    assert status == 200
    # Without an auth file the admin-only operations stay open, as before.
    assert (await call(http, "PUT", f"/config/{name}", {"compatibility": "NONE"}))[0] == 200
    assert (await call(http, "DELETE", f"/subjects/{name}"))[0] == 200
    assert (await call(http, "DELETE", f"/subjects/{name}?permanent=true"))[0] == 200


async def test_a_client_sending_headers_slowly_is_cut_off_and_others_are_served(
    kafka_bootstrap: str,
) -> None:
    settings = registry_settings(kafka_bootstrap).model_copy(
        update={"registry_header_timeout": 1.0}
    )
    with RegistryThread(settings) as registry:
        host, port = registry.url.removeprefix("http://").split(":")
        async with aiohttp.ClientSession() as session:

            async def others_are_served() -> None:
                async with session.get(f"{registry.url}/subjects") as response:
                    assert response.status == 200

            elapsed, answer = await slow_header_client(host, int(port), 10.0, others_are_served)
    assert 0.9 <= elapsed < 5.0, f"slow client connected for {elapsed:.1f}s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
