"""Soak: steady load, faults on a schedule, and an account of every expected delivery.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 120] [--cluster] [--interval 60]

Starts the platform (a throwaway Kafka unless CPEVENTS_BOOTSTRAP_SERVERS is set; with
``--cluster`` the local 3-node cluster of ``cpevents kafka start --brokers 3``): the registry
and the gateway, 2 routers and 2 delivery workers as processes, and the receivers in processes
of their own (bench/soak_receiver.py). Then, for ``--minutes``:

- load: ``--rate`` events/s in all (half through the gateway's ``POST /v1/events`` by two
  producers, half straight to Kafka with ``KafkaBus.publish_many``), over 20 tenants and 60
  webhooks, each on its own endpoint (bench/soak_plan.py: healthy, flaky, hanging, 410 Gone,
  an outage group); webhooks created, re-filtered and deleted on the way;
- faults (bench/soak_plan.py ``fault_schedule``): a router and a delivery worker SIGKILLed and
  restarted, an endpoint outage and recovery, hanging endpoints; with ``--cluster``, SIGKILL of
  the broker leading the most partitions and its restart (through the cluster CLI);
- every ``--interval`` seconds one line: published and delivered events/s, latency p50/p99
  (publish → POST received), consumer lag of the routers and delivery workers, running totals
  (published, delivered, lost-so-far = expected more than ``SETTLE_SECONDS`` ago and still
  unsettled, duplicates by same/other webhook-id, dead letters with reasons).

Then it drains (until every expected delivery is settled, at most ``--drain`` seconds), prints
a summary, and exits 1 if any expected delivery was lost (neither delivered, dead-lettered with
a reason, nor dropped because its webhook was disabled or deleted). The retry ladder of the
run is 1s/5s/15s/30s (not the default's hours), so flaky endpoints' retries end in the run.
Memory: one ledger entry per expected delivery (bench/soak_ledger.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path; the project root must.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import faulthandler
import multiprocessing
import random
import tempfile
import uuid

from bench.soak_driver import SoakDriver
from bench.soak_plan import RETRY_TIERS, SOAK_ENV, SPARE_ENDPOINTS, STABLE_WEBHOOKS
from bench.soak_receiver import start_receiver
from bench.soak_stack import ClusterError, SoakPlatform, cluster_bootstrap
from cpevents.stack import throwaway_environment
from plumbing.settings import Settings

RECEIVER_PROCESSES = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load period (max 120)")
    parser.add_argument("--rate", type=float, default=120.0, help="events/s published in all")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between lines")
    parser.add_argument("--drain", type=float, default=240.0, help="longest drain, seconds")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--routers", type=int, default=2)
    parser.add_argument("--deliveries", type=int, default=2)
    parser.add_argument("--cluster", action="store_true", help="run on the local 3-node cluster")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if not 0 < args.minutes <= 120:
        parser.error("--minutes must be within (0, 120]")
    return args


def soak_settings(args: argparse.Namespace, run: str) -> Settings:
    base = Settings()
    update: dict[str, object] = {
        "topic_prefix": f"soak{run}.",
        "registry_topic": f"_schemas_soak{run}",
        "retry_tiers": RETRY_TIERS,
        "partitions": args.partitions,
    }
    if args.cluster and not base.bootstrap_servers:
        update["bootstrap_servers"] = cluster_bootstrap()
    return base.model_copy(update=update)


def start_receivers() -> tuple[list[multiprocessing.Process], list[str], list[int]]:
    """Receiver processes; their control URLs; every endpoint port (stable ones first)."""
    processes, controls, ports = [], [], []
    per_process = -(-(STABLE_WEBHOOKS + SPARE_ENDPOINTS) // RECEIVER_PROCESSES)
    for _ in range(RECEIVER_PROCESSES):
        process, control, mine = start_receiver(per_process)
        processes.append(process)
        controls.append(control)
        ports.extend(mine)
    # Stable endpoints alternate between the processes, so each takes its share of the load.
    ports = _interleave(ports, per_process)
    return processes, controls, ports


def _interleave(ports: list[int], per_process: int) -> list[int]:
    groups = [ports[i : i + per_process] for i in range(0, len(ports), per_process)]
    return [p for row in zip(*groups, strict=True) for p in row]


def main() -> int:
    # A crash inside a native client (librdkafka) then prints every thread's Python stack.
    faulthandler.enable()
    args = parse_args()
    run = uuid.uuid4().hex[:8]
    try:
        settings = soak_settings(args, run)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = f"soak_{run}"
    env = {**throwaway_environment(token), **SOAK_ENV}
    receivers, controls, ports = start_receivers()
    # Kept after the run: the services' logs are where a lost delivery is looked up.
    logs = Path(tempfile.mkdtemp(prefix=f"cpevents-soak-{run}-"))
    print(f"soak {run}: topics {settings.topic_prefix}*, service logs in {logs}", file=sys.stderr)
    platform = SoakPlatform(
        settings, logs, env, args.routers, args.deliveries,
        ephemeral_kafka=not settings.bootstrap_servers,
    )  # fmt: skip
    try:
        platform.start(lambda message: print(f"  {message}", file=sys.stderr))
        driver = SoakDriver(args, platform, token, controls, ports, random.Random(args.seed))
        code = asyncio.run(driver.run())
    finally:
        platform.stop()
        for process in receivers:
            process.terminate()
    return code


if __name__ == "__main__":
    sys.exit(main())
