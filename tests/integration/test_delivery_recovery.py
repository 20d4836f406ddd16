"""Crash recovery of a worker subprocess, and redrive from the dead-letter topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from delivery.worker import DeliveryWorker
from plumbing.kafka.deadletter import message_headers, parse_dead_letter
from schemas.delivery_records import DeliveryStatus
from tests.conftest import settings_env
from tests.fixtures_delivery import (
    Feeder,
    Receiver,
    Recorder,
    delivery_settings,
    eventually,
)
from tests.fixtures_delivery import receiver as receiver  # the fixture

NETWORKS = "127.0.0.0/8"


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # --web-port 0: any free port for /metrics, so that workers never collide on 6067.
        [
            sys.executable,
            "-m",
            "cpevents",
            "worker",
            "delivery",
            "--log-level",
            "WARNING",
            "--web-port",
            "0",
        ],
        env={**env, "CPEVENTS_DELIVERY_ALLOWED_NETWORKS": NETWORKS},
    )


async def cli(env: dict[str, str], *args: str) -> str:
    """Run ``cpevents *args``; its stdout (fails on a non-zero exit)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpevents", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stdout
    return stdout.decode()


async def test_sigkill_mid_run_loses_nothing(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    env = {
        **os.environ,
        **settings_env(settings),
        "CPEVENTS_DELIVERY_BREAKER_FAILURES": "1000",
        # The killed worker's partitions move to the restarted one once its session expires.
        "CPEVENTS_DELIVERY_SESSION_TIMEOUT": "6",
    }
    feed = Feeder(settings)
    receiver.delay = 0.02
    ok = feed.webhook(receiver.script("/ok"))
    flaky = feed.webhook(receiver.script("/flaky", [500] * 20, default=200))
    tasks = feed.tasks(ok, count=60) + feed.tasks(flaky, count=20)
    attempts = Recorder(settings, settings.topics.webhook_deliveries)
    dlt = Recorder(settings, settings.topics.deliveries_dlt)
    worker = start_worker(env)
    try:
        await eventually(lambda: len(receiver.requests) >= 25, within=60, what="deliveries")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        worker = start_worker(env)

        topic = settings.topics.webhook_deliveries
        final = {DeliveryStatus.DELIVERED, DeliveryStatus.DEAD_LETTERED}

        def settled() -> bool:
            done = {
                m.key()
                for m in list(attempts.messages)
                if feed.serde.deliveries.decode(m.value(), topic).status in final
            }
            return all(task.id.encode() in done for task in tasks)

        await eventually(settled, within=90, what="every task delivered or dead-lettered")
    finally:
        worker.terminate()
        worker.wait(30)
        attempts.close()
        dlt.close()
    by_event = {task.event.id: task for task in tasks}
    delivered_events = set()
    for request in receiver.requests:
        # Duplicates are allowed, but they carry the same webhook-id: the event id.
        task = by_event[request.headers["webhook-id"]]
        assert request.body == task.event.to_json().encode()
        delivered_events.add(task.event.id)
    dead = {parse_dead_letter(message_headers(m)).extra.get("event-id") for m in dlt.messages}
    assert set(by_event) <= delivered_events | dead


async def test_redrive_from_the_dlt_delivers_once_fixed(
    kafka_bootstrap: str, registry_url: str, receiver: Receiver
) -> None:
    settings = delivery_settings(kafka_bootstrap, registry_url)
    feed = Feeder(settings)
    attempts = Recorder(settings, settings.topics.webhook_deliveries)
    dlt = Recorder(settings, settings.topics.deliveries_dlt)
    stop = asyncio.Event()
    worker = asyncio.create_task(DeliveryWorker(settings, serde=feed.serde).run(stop))
    topic = settings.topics.webhook_deliveries

    def status(task_id: str) -> DeliveryStatus | None:
        assert not worker.done(), worker
        records = [
            feed.serde.deliveries.decode(m.value(), topic)
            for m in list(attempts.messages)
            if m.key() == task_id.encode()
        ]
        return records[-1].status if records else None

    try:
        broken = feed.webhook(receiver.script("/fixme", [404]))
        other = feed.webhook(receiver.script("/other", [404]))
        [task] = feed.tasks(broken)
        [untouched] = feed.tasks(other)
        await eventually(lambda: len(dlt.messages) == 2, what="dead letters")
        await eventually(lambda: status(task.id) is DeliveryStatus.DEAD_LETTERED)
        # The endpoint is fixed (its script now answers 200); redrive only that webhook's.
        env = {
            **os.environ,
            "CPEVENTS_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CPEVENTS_TOPIC_PREFIX": settings.topic_prefix,
            "CPEVENTS_RETRY_TIERS": '["50ms","200ms","500ms"]',
        }
        listed = await cli(env, "dlt", "list", "--webhook", broken.id)
        assert "1 dead letters" in listed and "HTTP 404" in listed
        redriven = await cli(env, "dlt", "redrive", "--webhook", broken.id)
        assert "redrove 1" in redriven
        await eventually(lambda: status(task.id) is DeliveryStatus.DELIVERED, what="redelivery")
        assert [r.headers["webhook-id"] for r in receiver.at("/fixme")] == [task.event.id] * 2
        assert status(untouched.id) is DeliveryStatus.DEAD_LETTERED
        assert len(receiver.at("/other")) == 1
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        attempts.close()
        dlt.close()
