"""CompactedTopicView on a real broker: catch-up, tombstones, read-your-writes, bad records,
and restarts (reported as unhealthy) after its reader failed."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from tests.kafka_helpers import FlakyConsumer


def _decode(message: Message) -> tuple[str, str | None]:
    key = (message.key() or b"").decode()
    value = message.value()
    if value == b"poison":
        raise ValueError("poison record")
    return key, None if value is None else value.decode()


def _produce(settings: Settings, key: str, value: bytes | None) -> tuple[int, int]:
    producer = Producer(producer_config(settings))
    where: list[tuple[int, int]] = []
    producer.produce(
        settings.topics.webhooks,
        key=key.encode(),
        value=value,
        on_delivery=lambda err, msg: where.append((msg.partition(), msg.offset())),
    )
    producer.flush(10)
    return where[0]


def test_view_catches_up_tails_and_applies_tombstones(settings: Settings) -> None:
    for index in range(20):
        _produce(settings, f"k{index % 5}", f"v{index}".encode())
    _produce(settings, "k4", None)
    _produce(settings, "bad", b"poison")

    errors: list[str] = []
    view: CompactedTopicView[str] = CompactedTopicView(
        settings, settings.topics.webhooks, _decode, on_error=lambda m, e: errors.append(str(e))
    ).start()
    try:
        view.wait_until_caught_up(timeout=20)
        assert view.snapshot() == {"k0": "v15", "k1": "v16", "k2": "v17", "k3": "v18"}
        assert errors == ["poison record"]

        changes: list[tuple[str, str | None, str | None]] = []
        changed = threading.Event()
        view.add_listener(lambda k, old, new: (changes.append((k, old, new)), changed.set()))
        partition, offset = _produce(settings, "k1", b"new")
        view.wait_for(partition, offset, timeout=10)
        assert view.get("k1") == "new"
        assert changed.wait(5) and changes == [("k1", "v16", "new")]
    finally:
        view.stop()


def test_view_reports_unhealthy_while_its_reader_restarts_then_catches_up(
    settings: Settings,
) -> None:
    FlakyConsumer.failures = 0
    view: CompactedTopicView[str] = CompactedTopicView(
        settings,
        settings.topics.webhooks,
        _decode,
        consumer_factory=FlakyConsumer,  # type: ignore[arg-type]  # duck-typed Consumer
        restart_backoff=(0.5, 1.0),
    ).start()
    try:
        partition, offset = _produce(settings, "k1", b"v1")
        view.wait_for(partition, offset, timeout=10)
        assert view.healthy and view.error is None

        FlakyConsumer.failures = 3  # three failed polls in a row (backoff 0.5 s, 1 s, 1 s)
        deadline = time.monotonic() + 10
        while view.healthy:
            assert time.monotonic() < deadline, "the failure was never reported"
            time.sleep(0.01)
        assert "injected poll failure" in (view.error or "")
        # Written while the reader is down: applied once it is back, nothing skipped.
        partition, offset = _produce(settings, "k2", b"v2")
        _produce(settings, "k1", None)
        view.wait_for(partition, offset + 1, timeout=20)
        assert view.snapshot() == {"k2": "v2"}
        assert view.healthy and view.error is None
        assert view.restarts == 3
    finally:
        FlakyConsumer.failures = 0
        view.stop()
