"""Helpers shared by the router's unit and integration tests.

Worker processes run ``python -m cpevents worker streams`` against the test's settings, whose
schema registry is the session's real one (shared with the test process).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from plumbing.kafka.clients import admin_config, consumer_config, producer_config
from plumbing.settings import Settings
from schemas.avsc import schema_str
from schemas.event import Event
from schemas.ids import WEBHOOK, new_id
from schemas.serde import Serde
from schemas.webhook import Webhook

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


# -- records ------------------------------------------------------------------------------------


def raw_event_bytes(serde: Serde, topic: str, **changes: Any) -> bytes:
    """A wire-format Event record with ``changes`` applied, bypassing the model's validation
    (how a foreign producer could write a record that breaks the contract)."""
    record = Event.new("instance.created", "ten_poison").to_avro()
    record.update(changes)
    serializer = AvroSerializer(serde.client, schema_str("Event"), to_dict=lambda obj, _ctx: obj)
    data: bytes = serializer(record, SerializationContext(topic, MessageField.VALUE))
    return data


def poison_values(serde: Serde, topic: str) -> dict[str, bytes]:
    """Undecodable event values by the fragment of the dead-letter reason they must produce."""
    return {
        "not Confluent wire format": b'{"type": "instance.created"}',
        "Avro decoding failed": b"\x00\x00\x00\x00\x01\xff\xff\xff",
        "unknown event type": raw_event_bytes(serde, topic, type="instance.exploded"),
        "empty value": b"",
    }


def make_webhook(
    tenant: str, events: tuple[str, ...] = (), url: str = "https://example.com/hook"
) -> Webhook:
    return Webhook(id=new_id(WEBHOOK), tenant_id=tenant, url=url, events=events)


# -- Kafka I/O ---------------------------------------------------------------------------------


def produce(
    settings: Settings,
    records: list[tuple[str, bytes | None, bytes | None]],
    timeout: float = 30,
    headers: Sequence[list[tuple[str, bytes]]] | None = None,
) -> None:
    """Write (topic, key, value) records, with ``headers[i]`` for record i if given, and wait
    until Kafka acknowledged all of them."""
    producer = Producer(producer_config(settings))
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    for i, (topic, key, value) in enumerate(records):
        record_headers = None if headers is None else headers[i]
        producer.produce(
            topic, key=key, value=value, headers=record_headers, on_delivery=on_delivery
        )
        producer.poll(0)
    assert producer.flush(timeout) == 0 and not errors, errors


def put_webhooks(settings: Settings, serde: Serde, *webhooks: Webhook) -> None:
    topic = settings.topics.webhooks
    produce(settings, [(topic, w.id.encode(), serde.webhooks.encode(w, topic)) for w in webhooks])


def delete_webhook(settings: Settings, webhook_id: str) -> None:
    produce(settings, [(settings.topics.webhooks, webhook_id.encode(), None)])


def publish(settings: Settings, serde: Serde, events: list[Event]) -> None:
    records: list[tuple[str, bytes | None, bytes | None]] = []
    for event in events:
        topic = settings.topics.for_event_type(event.type)
        records.append((topic, event.tenant_id.encode(), serde.events.encode(event, topic)))
    produce(settings, records)


class TopicReader:
    """Reads every partition of a topic from the beginning, incrementally."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.messages: list[Message] = []
        self._consumer = Consumer(consumer_config(settings, f"reader-{uuid.uuid4().hex}"))
        metadata = self._consumer.list_topics(topic, timeout=30)
        self._partitions = sorted(metadata.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in self._partitions])

    def poll(self, timeout: float = 0.2) -> list[Message]:
        """Records that arrived since the last call."""
        new: list[Message] = []
        for message in self._consumer.consume(num_messages=10_000, timeout=timeout):
            if message.error():
                continue
            new.append(message)
        self.messages.extend(new)
        return new

    def count(self) -> int:
        """How many records were read so far, after reading what arrived."""
        self.poll()
        return len(self.messages)

    def read_to_end(self, timeout: float = 30.0) -> list[Message]:
        """Everything up to the current end of every partition (the high watermarks)."""
        ends = {
            p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in self._partitions
        }
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            positions = {
                tp.partition: tp.offset
                for tp in self._consumer.position(
                    [TopicPartition(self.topic, p) for p in self._partitions]
                )
            }
            if all(ends[p] == 0 or positions.get(p, -1) >= ends[p] for p in self._partitions):
                return self.messages
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: not at {ends} after {timeout}s: {positions}")

    def close(self) -> None:
        self._consumer.close()


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets ``group`` committed, by (topic, partition)."""
    admin = AdminClient(admin_config(settings))
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    result = future.result(timeout=30)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def diagnose_missing(
    settings: Settings, serde: Serde, group: str, missing_event_ids: set[str]
) -> str:
    """Whether events without tasks were LOST (the group committed past them) or STALLED."""
    where: dict[tuple[str, int], list[int]] = {}
    ends: dict[tuple[str, int], int] = {}
    for topic in settings.topics.all_events:
        reader = TopicReader(settings, topic)
        try:
            for message in reader.read_to_end():
                tp, offset = (topic, message.partition() or 0), message.offset() or 0
                ends[tp] = offset + 1
                if serde.events.decode(message.value(), topic).id in missing_event_ids:
                    where.setdefault(tp, []).append(offset)
        finally:
            reader.close()
    committed = committed_offsets(settings, group)
    lines = []
    for tp, offsets in sorted(where.items()):
        done = committed.get(tp, -1)
        verdict = "LOST" if min(offsets) < done else "stalled"
        lines.append(
            f"{tp[0]}[{tp[1]}]: {len(offsets)} without a task, offsets"
            f" {min(offsets)}..{max(offsets)}; committed {done}, end {ends.get(tp)}: {verdict}"
        )
    return "\n".join(lines)


# -- worker processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess:
    """One streams worker in a subprocess, with its web port for stats."""

    def __init__(
        self,
        env: dict[str, str],
        settings: Settings,
        processors: tuple[str, ...] = (),
        session_timeout: float = 6.0,
    ) -> None:
        self.port = free_port()
        args = ["--web-port", str(self.port), "--session-timeout", str(session_timeout)]
        for processor in processors:
            args += ["--processor", processor]
        if settings.schema_registry_url.startswith("mock://"):
            raise ValueError("worker processes need a real registry, not an in-process mock://")
        command = [sys.executable, "-m", "cpevents", "worker", "streams", *args]
        self.log_path = Path(f"/tmp/cpevents-streams-{self.port}.log")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str) -> Any:
        """The JSON of ``path`` on this worker's web server, or None if it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def stats(self) -> dict[str, Any] | None:
        self._check_alive()
        stats: dict[str, Any] | None = self.get("/router/stats/")
        return stats

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)
