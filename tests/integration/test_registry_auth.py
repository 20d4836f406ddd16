"""The registry locked down: HTTP Basic users and per-subject permissions from an auth file
(Karapace's format), admin-only dangerous operations, READONLY modes, ids never given twice,
and no exposed port without an auth file. A real broker, a real registry, real HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from plumbing.kafka.clients import consumer_config, producer_config
from plumbing.kafka.topic_admin import ensure_topics
from registry.auth import add_user
from registry.server import RegistryThread
from schemas.topics import TopicSpec
from tests.fixtures_registry import registry_settings

Auth = tuple[str, str] | None

ADMIN = ("admin", "admin-pw")
WRITER = ("writer", "writer-pw")  # writes auth-.* subjects
READER = ("reader", "reader-pw")  # reads auth-.* subjects
OTHER = ("other", "other-pw")  # writes other-.* subjects only


def _schema(name: str, field: str = "a", kind: str = "long") -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": field, "type": kind}]})


def call(
    url: str, method: str, path: str, body: Any = None, auth: Auth = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of one request; ``auth`` as HTTP Basic credentials."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.load(reply), dict(reply.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error), dict(error.headers)


def write_auth_file(path: Path) -> Path:
    add_user(path, ADMIN[0], ADMIN[1], admin=True)
    add_user(path, WRITER[0], WRITER[1], write=["auth-.*"])
    add_user(path, READER[0], READER[1], read=["auth-.*"])
    add_user(path, OTHER[0], OTHER[1], write=["other-.*"])
    return path


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_auth_file(tmp_path_factory.mktemp("registry-auth") / "users.json")


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, auth_file: Path) -> Iterator[str]:
    """URL of a registry with the auth file, on a topic of this module's own."""
    with RegistryThread(registry_settings(kafka_bootstrap, auth_file=auth_file)) as registry:
        yield registry.url


def subject(prefix: str = "auth") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}-value"


def _eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_without_credentials_every_api_call_is_401_but_probes_answer(secured: str) -> None:
    name = subject()
    for method, path, body in [
        ("POST", f"/subjects/{name}/versions", {"schema": _schema("U")}),
        ("GET", "/subjects", None),
        ("GET", "/schemas/ids/1", None),
        ("DELETE", f"/subjects/{name}?permanent=true", None),
        ("PUT", "/config", {"compatibility": "NONE"}),
        ("PUT", "/mode", {"mode": "READONLY"}),
    ]:
        status, answer, headers = call(secured, method, path, body)
        assert (status, answer["error_code"]) == (401, 40101), (method, path)
        assert headers["WWW-Authenticate"].startswith("Basic realm="), (method, path)
    for probe in ("/", "/_health"):
        assert call(secured, "GET", probe)[0] == 200


def test_wrong_password_unknown_user_and_malformed_header_are_401(secured: str) -> None:
    for auth in [(WRITER[0], "wrong"), ("nobody", WRITER[1]), (WRITER[0], "")]:
        status, answer, _ = call(secured, "GET", "/subjects", auth=auth)
        assert (status, answer["error_code"]) == (401, 40101), auth
        assert WRITER[1] not in answer["message"]
    for header in ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]:
        status, answer, _ = call(secured, "GET", "/subjects", Authorization=header)
        assert (status, answer["error_code"]) == (401, 40101), header


def test_read_only_user_reads_but_cannot_write(secured: str) -> None:
    name = subject()
    status, answer, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("R")}, READER
    )
    assert (status, answer["error_code"]) == (403, 40301)
    assert "reader" in answer["message"] and f"Subject:{name}" in answer["message"]

    status, registered, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("R")}, WRITER
    )
    assert status == 200
    schema_id = registered["id"]
    assert call(secured, "GET", f"/subjects/{name}/versions/latest", auth=READER)[0] == 200
    status, found, _ = call(secured, "POST", f"/subjects/{name}", {"schema": _schema("R")}, READER)
    assert (status, found["id"]) == (200, schema_id)
    assert call(secured, "GET", f"/schemas/ids/{schema_id}", auth=READER)[0] == 200
    for method, path, body in [
        ("DELETE", f"/subjects/{name}", None),
        ("PUT", f"/config/{name}", {"compatibility": "FULL"}),
        ("PUT", f"/mode/{name}", {"mode": "READONLY"}),
    ]:
        status, answer, _ = call(secured, method, path, body, READER)
        assert (status, answer["error_code"]) == (403, 40301), (method, path)


def test_users_only_see_subjects_and_ids_they_may_read(secured: str) -> None:
    name = subject()
    _, registered, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("Seen")}, WRITER
    )
    mine = subject("other")
    status, _, _ = call(
        secured, "POST", f"/subjects/{mine}/versions", {"schema": _schema("Mine")}, OTHER
    )
    assert status == 200

    _, listed, _ = call(secured, "GET", "/subjects", auth=OTHER)
    assert mine in listed and name not in listed
    _, listed, _ = call(secured, "GET", "/subjects", auth=READER)
    assert name in listed and mine not in listed
    # An id used only by subjects the user cannot read is "not found", as Karapace answers.
    status, answer, _ = call(secured, "GET", f"/schemas/ids/{registered['id']}", auth=OTHER)
    assert (status, answer["error_code"]) == (404, 40403)
    _, versions, _ = call(secured, "GET", f"/schemas/ids/{registered['id']}/versions", auth=OTHER)
    assert versions == []
    status, answer, _ = call(secured, "GET", f"/subjects/{name}/versions", auth=OTHER)
    assert (status, answer["error_code"]) == (403, 40301)


def test_permanent_delete_and_compatibility_none_need_the_admin(secured: str) -> None:
    name = subject()
    call(secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("D")}, WRITER)

    status, answer, _ = call(
        secured, "PUT", f"/config/{name}", {"compatibility": "NONE"}, auth=WRITER
    )
    assert (status, answer["error_code"]) == (403, 40301)
    assert "admin" in answer["message"]
    status, answer, _ = call(secured, "PUT", "/config", {"compatibility": "FULL"}, auth=WRITER)
    assert (status, answer["error_code"]) == (403, 40301)
    assert call(secured, "PUT", f"/config/{name}", {"compatibility": "FULL"}, WRITER)[0] == 200
    status, answer, _ = call(secured, "PUT", f"/config/{name}", {"compatibility": "NONE"}, ADMIN)
    assert (status, answer) == (200, {"compatibility": "NONE"})

    # A soft delete is an ordinary write; the permanent one needs the admin.
    assert call(secured, "DELETE", f"/subjects/{name}", auth=WRITER)[:2] == (200, [1])
    status, answer, _ = call(secured, "DELETE", f"/subjects/{name}?permanent=true", auth=WRITER)
    assert (status, answer["error_code"]) == (403, 40301)
    status, answer, _ = call(
        secured, "DELETE", f"/subjects/{name}/versions/1?permanent=true", auth=WRITER
    )
    assert (status, answer["error_code"]) == (403, 40301)
    assert call(secured, "DELETE", f"/subjects/{name}?permanent=true", auth=ADMIN)[:2] == (
        200,
        [1],
    )
    _, listed, _ = call(secured, "GET", "/subjects?deleted=true", auth=ADMIN)
    assert name not in listed


def test_readonly_mode_refuses_writes_until_readwrite(secured: str) -> None:
    name = subject()
    _, first, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("M")}, WRITER
    )
    assert call(secured, "GET", f"/mode/{name}", auth=READER)[:2] == (
        404,
        {
            "error_code": 40409,
            "message": f"Subject '{name}' does not have subject-level mode configured",
        },
    )
    assert call(secured, "GET", f"/mode/{name}?defaultToGlobal=true", auth=READER)[:2] == (
        200,
        {"mode": "READWRITE"},
    )
    assert call(secured, "PUT", f"/mode/{name}", {"mode": "READONLY"}, WRITER)[:2] == (
        200,
        {"mode": "READONLY"},
    )
    assert call(secured, "GET", f"/mode/{name}", auth=READER)[:2] == (200, {"mode": "READONLY"})
    evolved = json.dumps(
        {
            "type": "record",
            "name": "M",
            "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "long", "default": 0}],
        }
    )
    status, answer, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": evolved}, WRITER
    )
    assert (status, answer["error_code"]) == (422, 42205)
    assert answer["message"] == f"Subject {name} is in read-only mode"
    for method, path, body in [
        ("DELETE", f"/subjects/{name}", None),
        ("PUT", f"/config/{name}", {"compatibility": "FULL"}),
    ]:
        status, answer, _ = call(secured, method, path, body, WRITER)
        assert (status, answer["error_code"]) == (422, 42205), (method, path)
    # Registering what is already there writes nothing and keeps serializers working.
    status, again, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("M")}, WRITER
    )
    assert (status, again) == (200, first)
    status, answer, _ = call(secured, "PUT", f"/mode/{name}", {"mode": "IMPORT"}, WRITER)
    assert (status, answer["error_code"]) == (422, 42204)

    assert call(secured, "PUT", f"/mode/{name}", {"mode": "READWRITE"}, WRITER)[0] == 200
    status, _, _ = call(secured, "POST", f"/subjects/{name}/versions", {"schema": evolved}, WRITER)
    assert status == 200
    assert call(secured, "DELETE", f"/mode/{name}", auth=WRITER)[:2] == (
        200,
        {"mode": "READWRITE"},
    )


def test_global_readonly_is_the_admins_and_blocks_every_subject(secured: str) -> None:
    name = subject()
    status, answer, _ = call(secured, "PUT", "/mode", {"mode": "READONLY"}, WRITER)
    assert (status, answer["error_code"]) == (403, 40301)
    assert call(secured, "PUT", "/mode", {"mode": "READONLY_OVERRIDE"}, ADMIN)[0] == 200
    try:
        assert call(secured, "GET", "/mode", auth=ADMIN)[:2] == (200, {"mode": "READONLY_OVERRIDE"})
        # A subject's own READWRITE does not lift the override.
        assert call(secured, "PUT", f"/mode/{name}", {"mode": "READWRITE"}, WRITER)[0] == 200
        status, answer, _ = call(
            secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("G")}, WRITER
        )
        assert (status, answer["error_code"]) == (422, 42205)
    finally:
        assert call(secured, "PUT", "/mode", {"mode": "READWRITE"}, ADMIN)[0] == 200
    status, _, _ = call(
        secured, "POST", f"/subjects/{name}/versions", {"schema": _schema("G")}, WRITER
    )
    assert status == 200


def test_a_recreated_subject_gets_a_new_id(secured: str) -> None:
    name = subject()
    text = _schema("Again")
    _, first, _ = call(secured, "POST", f"/subjects/{name}/versions", {"schema": text}, WRITER)
    call(secured, "DELETE", f"/subjects/{name}", auth=WRITER)
    call(secured, "DELETE", f"/subjects/{name}?permanent=true", auth=ADMIN)
    status, answer, _ = call(secured, "GET", f"/schemas/ids/{first['id']}", auth=ADMIN)
    assert (status, answer["error_code"]) == (404, 40403)
    _, second, _ = call(secured, "POST", f"/subjects/{name}/versions", {"schema": text}, WRITER)
    assert second["id"] > first["id"]


def test_confluent_client_with_basic_auth_registers_and_fetches(secured: str) -> None:
    name = subject()
    schema = Schema(_schema("Client", "x", "string"), "AVRO")
    client = SchemaRegistryClient({"url": secured, "basic.auth.user.info": ":".join(WRITER)})
    schema_id = client.register_schema(name, schema)
    fetched = client.get_schema(schema_id)
    assert json.loads(fetched.schema_str or "") == json.loads(schema.schema_str or "")
    assert client.get_latest_version(name).schema_id == schema_id
    # Credentials in the URL, as CPEVENTS_SCHEMA_REGISTRY_URL can carry them.
    host = secured.removeprefix("http://")
    reader = SchemaRegistryClient({"url": f"http://{READER[0]}:{READER[1]}@{host}"})
    assert reader.lookup_schema(name, schema).schema_id == schema_id
    with pytest.raises(SchemaRegistryError) as refused:
        reader.register_schema(name, Schema(_schema("Client2"), "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (403, 40301)
    anonymous = SchemaRegistryClient({"url": secured})
    with pytest.raises(SchemaRegistryError) as unauthenticated:
        anonymous.get_subjects()
    assert unauthenticated.value.http_status_code == 401


def test_a_user_added_while_running_can_log_in(secured: str, auth_file: Path) -> None:
    late = ("late", f"pw-{uuid.uuid4().hex}")
    assert call(secured, "GET", "/subjects", auth=late)[0] == 401
    add_user(auth_file, late[0], late[1], read=["auth-.*"])
    _eventually(lambda: call(secured, "GET", "/subjects", auth=late)[0] == 200, timeout=10)


def test_a_follower_forwards_the_credentials_to_the_writer(
    kafka_bootstrap: str, registry_topic: str, auth_file: Path
) -> None:
    settings = registry_settings(kafka_bootstrap, registry_topic, auth_file=auth_file)
    with RegistryThread(settings) as a, RegistryThread(settings) as b:
        writer, follower = (a, b) if a.store.is_writer else (b, a)
        name = subject()
        status, answer, _ = call(
            follower.url, "POST", f"/subjects/{name}/versions", {"schema": _schema("F")}, WRITER
        )
        assert (status, answer) == (200, {"id": 1})
        # The writer does not trust the forwarded marker: such requests are checked as any other.
        status, answer, _ = call(
            writer.url,
            "DELETE",
            f"/subjects/{name}?permanent=true",
            auth=WRITER,
            X_Cpevents_Registry_Forwarded="x",
        )
        assert (status, answer["error_code"]) == (403, 40301)


def _compacted_copy(kafka_bootstrap: str, source: str, target: str) -> None:
    """Copy what compaction would keep of ``source`` (the latest value of every key, no
    tombstones) to a new topic: the state a registry replays after compaction ran."""
    settings = registry_settings(kafka_bootstrap, source)
    consumer = Consumer(consumer_config(settings, f"copy-{uuid.uuid4().hex}"))
    end = consumer.get_watermark_offsets(TopicPartition(source, 0), timeout=10)[1]
    consumer.assign([TopicPartition(source, 0, 0)])
    latest: dict[bytes, bytes | None] = {}
    try:
        while True:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                latest[message.key() or b""] = message.value()
            position = consumer.position([TopicPartition(source, 0)])[0].offset
            if position >= end:
                break
    finally:
        consumer.close()
    spec = TopicSpec(
        name=target, role="registry", partitions=1, config={"cleanup.policy": "compact"}
    )
    ensure_topics(settings, [spec])
    producer = Producer(producer_config(settings))
    for key, value in latest.items():
        if value is not None:
            producer.produce(target, key=key, value=value, partition=0)
    assert producer.flush(15) == 0


def test_ids_never_go_back_after_restart_and_compaction(
    kafka_bootstrap: str, registry_topic: str, auth_file: Path
) -> None:
    settings = registry_settings(kafka_bootstrap, registry_topic, auth_file=auth_file)

    def register(url: str, name: str, record: str) -> int:
        status, answer, _ = call(
            url, "POST", f"/subjects/{name}/versions", {"schema": _schema(record)}, WRITER
        )
        assert status == 200, answer
        return int(answer["id"])

    def purge(url: str, name: str) -> None:
        assert call(url, "DELETE", f"/subjects/{name}", auth=WRITER)[0] == 200
        assert call(url, "DELETE", f"/subjects/{name}?permanent=true", auth=ADMIN)[0] == 200

    with RegistryThread(settings) as registry:
        assert register(registry.url, "auth-keep-value", "K") == 1
        assert register(registry.url, "auth-gone-value", "G") == 2
        purge(registry.url, "auth-gone-value")

    # A restart replays the deleted versions and their tombstones.
    with RegistryThread(settings) as restarted:
        assert register(restarted.url, "auth-gone-value", "G") == 3
        purge(restarted.url, "auth-gone-value")

    # After compaction only id 1 is left in the topic; the watermark still says 3.
    compacted = f"{registry_topic}.compacted"
    _compacted_copy(kafka_bootstrap, registry_topic, compacted)
    replay = registry_settings(kafka_bootstrap, compacted, auth_file=auth_file)
    with RegistryThread(replay) as replayed:
        assert register(replayed.url, "auth-new-value", "N") == 4
        assert register(replayed.url, "auth-gone-value", "G") == 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli_env(kafka_bootstrap: str, topic: str, auth_file: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPEVENTS_")}
    env.update(CPEVENTS_BOOTSTRAP_SERVERS=kafka_bootstrap, CPEVENTS_REGISTRY_TOPIC=topic)
    if auth_file is not None:
        env["CPEVENTS_REGISTRY_AUTH_FILE"] = str(auth_file)
    return env


def test_no_auth_file_refuses_a_non_loopback_address(
    kafka_bootstrap: str, registry_topic: str
) -> None:
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpevents",
            "registry",
            "--host",
            "0.0.0.0",
            "--port",
            str(_free_port()),
        ],
        env=_cli_env(kafka_bootstrap, registry_topic, None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    message = " ".join(process.stderr.split())  # rich wraps long lines
    assert "CPEVENTS_REGISTRY_AUTH_FILE" in message and "0.0.0.0" in message


def test_with_an_auth_file_the_command_listens_everywhere(
    kafka_bootstrap: str, registry_topic: str, auth_file: Path
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cpevents", "registry", "--host", "0.0.0.0", "--port", str(port)],
        env=_cli_env(kafka_bootstrap, registry_topic, auth_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, process.communicate()
            try:
                return call(url, "GET", "/_health")[0] == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        _eventually(ready, timeout=60)
        assert call(url, "GET", "/subjects")[0] == 401
        assert call(url, "GET", "/subjects", auth=READER)[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "HTTP Basic auth" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
