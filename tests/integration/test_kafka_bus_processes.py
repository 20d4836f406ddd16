"""KafkaBus across processes: another process publishes, this one's subscription receives."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde
from tests.integration.test_kafka_bus import collector, eventually

PUBLISHER = """
import asyncio, sys
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event

async def main() -> None:
    bus = KafkaBus(Settings())
    events = [
        Event.new(sys.argv[1], "ten_proc").with_payload({"n": n}) for n in range(int(sys.argv[2]))
    ]
    await bus.publish_many(events)
    await bus.close()
    for event in events:
        print(event.to_json(), flush=True)

asyncio.run(main())
"""


async def test_events_published_by_another_process_reach_a_subscription(
    settings: Settings, cli_env: dict[str, str], registry_url: str
) -> None:
    shared = settings.model_copy(update={"schema_registry_url": registry_url})
    received: list[Event] = []
    bus = KafkaBus(shared, Serde(registry_url))
    bus.subscribe(collector(received), EventType.HEALTH_DEGRADED, name="cross-process")

    env = {**cli_env, "CPEVENTS_SCHEMA_REGISTRY_URL": registry_url}
    env.pop("PYTHONPATH", None)
    # In a thread, so this process's subscription keeps consuming while the child publishes.
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PUBLISHER, "health.degraded", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.getcwd(),
    )
    assert child.returncode == 0, child.stderr
    sent = [Event.from_json_dict(json.loads(line)) for line in child.stdout.splitlines()]
    assert len(sent) == 5
    await eventually(lambda: len(received) == 5)
    await bus.close()
    assert received == sent
