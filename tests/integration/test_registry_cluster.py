"""Registry instances on one ``_schemas`` topic: a restart keeps every id, two instances agree
on ids while only the elected one writes, and the role moves when the writer stops."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from plumbing.kafka.view import CompactedTopicView
from registry.records import decode
from registry.server import RegistryThread
from registry.store import WRITER_HEADER
from schemas.avsc import schema_names, schema_str
from tests.fixtures_registry import registry_settings


def _schema(index: int) -> Schema:
    fields = [{"name": f"f{index}", "type": "int"}]
    return Schema(json.dumps({"type": "record", "name": f"R{index}", "fields": fields}), "AVRO")


def _client(registry: RegistryThread) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def _eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _writers_of(kafka_bootstrap: str, topic: str) -> set[str]:
    """Instance ids found in the writer header of every record of ``topic``."""
    writers: set[str] = set()

    def note(message: object) -> tuple[str, object]:
        headers = dict(message.headers() or [])  # type: ignore[attr-defined]
        writers.add(headers[WRITER_HEADER].decode())
        return decode(message.key(), message.value())  # type: ignore[attr-defined]

    view: CompactedTopicView[object] = CompactedTopicView(
        registry_settings(kafka_bootstrap, topic), topic, note
    ).start()
    try:
        view.wait_until_caught_up(timeout=20)
    finally:
        view.stop()
    return writers


def test_restart_keeps_every_id(kafka_bootstrap: str, registry_topic: str) -> None:
    settings = registry_settings(kafka_bootstrap, registry_topic)
    registered: dict[str, int] = {}
    with RegistryThread(settings) as first:
        client = _client(first)
        for name in schema_names():
            registered[f"{name}-value"] = client.register_schema(
                f"{name}-value", Schema(schema_str(name), "AVRO")
            )
        client.set_compatibility("Event-value", "FULL")
        client.delete_subject("Webhook-value")

    with RegistryThread(settings) as second:
        client = _client(second)
        assert second.store.is_writer
        for subject, schema_id in registered.items():
            name = subject.removesuffix("-value")
            assert json.loads(client.get_schema(schema_id).schema_str or "")["name"] == name
            if subject != "Webhook-value":
                assert client.get_latest_version(subject).schema_id == schema_id
        assert client.get_subjects() == sorted(set(registered) - {"Webhook-value"})
        assert client.get_compatibility("Event-value") == "FULL"
        # New ids continue after the old ones, never reuse them.
        assert client.register_schema("new-value", _schema(0)) == max(registered.values()) + 1


def test_two_instances_agree_on_ids_and_only_one_writes(
    kafka_bootstrap: str, registry_topic: str
) -> None:
    settings = registry_settings(kafka_bootstrap, registry_topic)
    with RegistryThread(settings) as a, RegistryThread(settings) as b:
        assert [a.store.is_writer, b.store.is_writer].count(True) == 1
        writer, follower = (a, b) if a.store.is_writer else (b, a)
        writer_id = writer.store.instance_id
        clients = [_client(a), _client(b)]
        ids: dict[int, set[int]] = {}
        for index in range(6):
            # Alternate the instance asked first; each answer must be readable on the
            # instance that gave it (read-your-writes through forwarding).
            for client in clients if index % 2 else reversed(clients):
                schema_id = client.register_schema(f"s{index}-value", _schema(index))
                ids.setdefault(index, set()).add(schema_id)
                assert (
                    json.loads(client.get_schema(schema_id).schema_str or "")["name"] == f"R{index}"
                )
        assert all(len(found) == 1 for found in ids.values()), ids
        assert sorted(next(iter(found)) for found in ids.values()) == list(range(1, 7))
        follower_client = _client(follower)
        answer: Any = follower_client.set_compatibility("s0-value", "NONE")  # hinted as str
        assert answer == {"compatibility": "NONE"}
        assert follower_client.get_compatibility("s0-value") == "NONE"
        assert follower_client.delete_subject("s1-value") == [1]
        assert "s1-value" not in follower_client.get_subjects()

    assert _writers_of(kafka_bootstrap, registry_topic) == {writer_id}


def test_writer_role_moves_when_the_writer_stops(kafka_bootstrap: str, registry_topic: str) -> None:
    settings = registry_settings(kafka_bootstrap, registry_topic)
    a = RegistryThread(settings).start()
    b = RegistryThread(settings).start()
    try:
        writer, follower = (a, b) if a.store.is_writer else (b, a)
        first = _client(follower).register_schema("x-value", _schema(1))
        writer.stop()
        _eventually(lambda: follower.store.is_writer)
        client = _client(follower)
        assert client.register_schema("y-value", _schema(2)) == first + 1
        assert client.register_schema("z-value", _schema(1)) == first
    finally:
        a.stop()
        b.stop()
    assert len(_writers_of(kafka_bootstrap, registry_topic)) == 2


def test_topic_name_comes_from_settings(kafka_bootstrap: str) -> None:
    topic = f"_schemas.test.{uuid.uuid4().hex[:8]}"
    with RegistryThread(registry_settings(kafka_bootstrap, topic)) as registry:
        assert registry.store.topic == topic
