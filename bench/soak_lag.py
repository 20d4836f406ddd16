"""Consumer lag of the routers and delivery workers, read in a process of its own.

    python -m bench.soak_lag      (settings from CPEVENTS_*; prints {"router": n, "delivery": n})

Why a process: librdkafka's admin client can abort the whole process when a broker dies while a
coordinator request (ListConsumerGroupOffsets, which ``LagReader.committed`` makes) is in flight
(``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0' failed``;
confluentinc/librdkafka#4605 and #3663, fix proposed in #5397). The soak kills a broker on
purpose; it must survive its own lag readings, so :func:`lag_in_subprocess` runs this module and
reports a reading it could not get as ``None``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from delivery.worker import group_id as delivery_group
from plumbing.kafka.lag import LagReader
from plumbing.settings import Settings
from streams.app import app_id as streams_group

ROOT = Path(__file__).resolve().parent.parent


def read_lag(settings: Settings) -> dict[str, int | None]:
    """Records the router group and the delivery group have yet to read, summed over topics."""
    topics = settings.topics
    groups = {
        "router": (streams_group(settings), topics.all_events),
        "delivery": (
            delivery_group(settings),
            [topics.deliveries, *(topics.retry(t) for t in topics.retry_tiers)],
        ),
    }
    reader = LagReader(settings)
    found: dict[str, int | None] = {}
    for name, (group, names) in groups.items():
        try:
            found[name] = sum(s.lag for s in reader.lags(group, names))
        except Exception:  # a broker fault: no reading rather than no report
            found[name] = None
    return found


def lag_in_subprocess(settings: Settings, timeout: float = 30) -> dict[str, int | None]:
    """:func:`read_lag` in a child process; ``None`` values when it failed or crashed."""
    env = dict(os.environ)
    env.update(
        CPEVENTS_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "",
        CPEVENTS_TOPIC_PREFIX=settings.topic_prefix,
        CPEVENTS_RETRY_TIERS=json.dumps(list(settings.retry_tiers)),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.soak_lag"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode == 0:
            reading: dict[str, int | None] = json.loads(done.stdout)
            return reading
        print(f"  lag reader exited with {done.returncode} (a broker fault?)", flush=True)
    except (subprocess.TimeoutExpired, ValueError) as exc:
        print(f"  lag not read: {exc}", flush=True)
    return {"router": None, "delivery": None}


if __name__ == "__main__":
    print(json.dumps(read_lag(Settings())))
