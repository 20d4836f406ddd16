"""Users' processors run in the streams workers: the example's windowed counts over HTTP."""

from __future__ import annotations

from typing import Any

from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from schemas.event_types import EventType
from tests.fixtures_streams import WorkerProcess, publish, wait_until


def test_counts_processor_serves_per_tenant_per_type_counts(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    serde = serde_for(settings)
    # An hour-long window, so that the test never straddles a window boundary.
    env = {**cli_env, "CPEVENTS_COUNTS_WINDOW_SECONDS": "3600"}
    worker = WorkerProcess(env, settings, processors=("streams.processors.counts",))
    try:
        wait_until(worker.stats, 60, "the worker")
        publish(
            settings,
            serde,
            [Event.new(EventType.INSTANCE_CREATED, "ten_x") for _ in range(3)]
            + [Event.new(EventType.DEPLOY_FAILED, "ten_x") for _ in range(2)]
            + [Event.new(EventType.DEPLOY_FAILED, "ten_y")],
        )
        expected = {"instance.created": 3, "deploy.failed": 2}

        def counts(tenant: str) -> dict[str, Any] | None:
            worker.stats()  # fails fast if the worker died
            answer = worker.get(f"/counts/{tenant}/")
            return answer["counts"] if answer else None

        wait_until(lambda: counts("ten_x") == expected, 30, f"counts {expected}")
        assert counts("ten_y") == {"deploy.failed": 1}
        assert counts("ten_nobody") == {}
    finally:
        worker.stop()
