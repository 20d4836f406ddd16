"""CPU per event of each stage, and throughput with 1, 2 and 3 workers of each kind.

    .venv/bin/python bench/scaling.py [--events 60000] [--workers 1,2,3] [--partitions 6]
        [--gateway-events 3000] [--rounds 1]

Everything docs/scaling.md quotes is printed, with this command line, the date and the load
average. Without CPEVENTS_BOOTSTRAP_SERVERS it starts a throwaway broker; with it, the broker's
process is found by its port (``ss -ltnp``) to read its CPU time, and its idle CPU rate before
each phase is subtracted (a shared broker works for others too: that figure is noisy).

For each worker count n (n routers and n delivery workers, ``--partitions`` partitions per
topic, 48 tenants with one webhook each spread over 8 receiver endpoints in one process):

1. router phase: delivery workers and routers are stopped (SIGSTOP), ``--events`` events are
   published with KafkaBus, the routers continued (SIGCONT); routed events/s = events / time
   until the deliveries topic holds every task; CPU per event = CPU time the routers (and the
   broker) used meanwhile (/proc/<pid>/stat utime + stime, every thread) / events;
2. delivery phase: the delivery workers are continued; delivered events/s = events / time until
   the receiver recorded every POST; CPU per event of the delivery workers, the broker and the
   receiver likewise.
Then, once with the last worker count, the gateway: ``--gateway-events`` events posted to
``POST /v1/events`` one per request, and in batches of 20, 8 requests in flight: CPU per event of
the gateway process. Stopping the workers makes each phase a backlog drained at full speed, and
keeps the other stage's CPU out of it; start-up CPU is excluded because the snapshots are taken
after every process is ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path; the project root must.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.soak_receiver import start_receiver
from bench.soak_stack import DELIVERY, ROUTER, SoakPlatform, proc_cpu_seconds
from cpevents.stack import throwaway_environment
from plumbing.kafka.lag import LagReader
from plumbing.settings import Settings
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.event_types import EventType, subsystem_of

TENANTS = 48
ENDPOINTS = 8
TYPES = [t for t in EventType if subsystem_of(t) != "admin"]
ENV = {
    # 48 webhooks over 8 endpoints: let each endpoint take 32 requests at once, so the
    # per-endpoint limit (8 by default) is not what is measured.
    "CPEVENTS_DELIVERY_PER_ENDPOINT_LIMIT": "32",
    # The stopped stage must keep its partitions while the other one runs.
    "CPEVENTS_DELIVERY_SESSION_TIMEOUT": "80",
    "CPEVENTS_STREAMS_SESSION_TIMEOUT": "80",  # Faust: at most its request timeout, 90
}


def broker_pid(bootstrap: str) -> int | None:
    """The pid of the process listening on the first bootstrap server's port (same user)."""
    port = bootstrap.split(",")[0].rpartition(":")[2]
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


class CpuMeter:
    """CPU seconds of named processes between :meth:`start` and :meth:`stop`; a process given
    an idle rate (CPU s per s, measured before) has it subtracted as ``<name> (net)``."""

    def __init__(self, pids: dict[str, int], idle: dict[str, float] | None = None) -> None:
        self.pids = pids
        self.idle = idle or {}
        self.begin: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.t = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        self.begin = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self.t = time.monotonic()

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.t
        self.used = {n: proc_cpu_seconds(p) - self.begin[n] for n, p in self.pids.items()}
        for name, rate in self.idle.items():
            self.used[f"{name} (net)"] = max(0.0, self.used[name] - rate * self.seconds)

    def per_event_us(self, names: Iterable[str], events: int) -> float:
        return 1e6 * sum(self.used.get(n, 0.0) for n in names) / max(events, 1)


def idle_rate(pid: int | None, seconds: float = 5.0) -> float:
    """CPU seconds per second ``pid`` uses now (the broker while our pipeline is quiet)."""
    if pid is None:
        return 0.0
    before = proc_cpu_seconds(pid)
    time.sleep(seconds)
    return (proc_cpu_seconds(pid) - before) / seconds


@dataclass
class Phase:
    """One measured phase."""

    name: str
    workers: int
    events: int
    seconds: float
    cpu_us: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in self.cpu_us.items())
        return (
            f"{self.name:<22} workers {self.workers}  {self.events:6d} events in "
            f"{self.seconds:6.2f}s = {self.rate:7.0f}/s   CPU µs/event: {cpu}"
        )


async def receiver_count(http: aiohttp.ClientSession, control: str, seen: list[float]) -> int:
    """Drain the receiver; ``seen`` collects arrival times (2xx). Returns how many so far."""
    async with http.get(f"{control}/drain") as response:
        for at, _event, _header, _port, status in await response.json():
            if 200 <= status < 300:
                seen.append(at)
    return len(seen)


def deliveries_end(reader: LagReader, topic: str) -> int:
    return sum(high for _low, high in reader.ends(reader.partitions([topic])).values())


class Scaling:
    """Runs the phases for one worker count on a fresh platform and topics."""

    def __init__(self, args: argparse.Namespace, control: str, ports: list[int]) -> None:
        self.args = args
        self.control = control
        self.ports = ports
        self.receiver_pid = 0
        self.phases: list[Phase] = []

    def events(self, count: int) -> list[Event]:
        return [
            Event.new(TYPES[i % len(TYPES)], f"ten_scale{i % TENANTS:02d}").with_payload(
                {"seq": i, "name": "api", "replicas": 3, "labels": {"team": "core"}}
            )
            for i in range(count)
        ]

    async def webhooks(
        self, http: aiohttp.ClientSession, platform: SoakPlatform, token: str
    ) -> None:
        for index in range(TENANTS):
            body = {
                "tenant_id": f"ten_scale{index:02d}",
                "url": f"http://127.0.0.1:{self.ports[index % ENDPOINTS]}/hook/{index}",
                "events": [],
            }
            async with http.post(
                f"{platform.gateway_url}/v1/webhooks",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 201, await response.text()

    async def warm_up(self, http: aiohttp.ClientSession, bus: KafkaBus) -> None:
        """Rounds of one event per tenant until a whole round is delivered: every worker has
        every webhook and its connections."""
        for _ in range(60):
            await bus.publish_many(self.events(TENANTS))
            seen: list[float] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(seen) < TENANTS:
                await asyncio.sleep(0.3)
                await receiver_count(http, self.control, seen)
            if len(seen) >= TENANTS:
                await asyncio.sleep(1)
                await receiver_count(http, self.control, [])
                return
        raise RuntimeError("warm-up deliveries never all arrived")

    async def measure(self, platform: SoakPlatform, token: str, n: int) -> None:
        settings = platform.settings
        pids = platform.pids()
        broker = broker_pid(settings.bootstrap_servers or "")
        if broker is not None:
            pids["broker"] = broker
        pids["receiver"] = self.receiver_pid
        reader = LagReader(settings)
        async with aiohttp.ClientSession() as http:
            await self.webhooks(http, platform, token)
            bus = KafkaBus(settings)
            try:
                await self.warm_up(http, bus)
                await self.router_phase(platform, bus, reader, pids, n)
                await self.delivery_phase(platform, http, pids, n)
                if n == self.args.workers[-1]:
                    await self.gateway_phases(platform, http, token, pids, n)
            finally:
                await bus.close()

    def idle(self, pids: dict[str, int]) -> dict[str, float]:
        return {"broker": idle_rate(pids.get("broker"))} if "broker" in pids else {}

    async def router_phase(
        self,
        platform: SoakPlatform,
        bus: KafkaBus,
        reader: LagReader,
        pids: dict[str, int],
        n: int,
    ) -> None:
        count = self.args.events
        topic = platform.settings.topics.deliveries
        platform.signal_all(DELIVERY, signal.SIGSTOP)
        platform.signal_all(ROUTER, signal.SIGSTOP)
        before = deliveries_end(reader, topic)
        events = self.events(count)
        for index in range(0, count, 1000):
            await bus.publish_many(events[index : index + 1000])
        meter = CpuMeter(pids, await asyncio.to_thread(self.idle, pids))
        early = deliveries_end(reader, topic) - before
        if early:  # the stop did not hold: the CPU before the snapshot would be missed
            raise RuntimeError(f"{early} events routed while the routers were stopped")
        meter.start()
        platform.signal_all(ROUTER, signal.SIGCONT)
        while deliveries_end(reader, topic) - before < count:  # noqa: ASYNC110 (polls Kafka)
            await asyncio.sleep(0.05)
        meter.stop()
        routers = [w.name for w in platform.of_kind(ROUTER)]
        cpu = {"routers": meter.per_event_us(routers, count)}
        cpu.update(self.broker_cpu(meter, count))
        cpu.update({name: meter.per_event_us([name], count) for name in routers if n > 1})
        self.phases.append(Phase("router", n, count, meter.seconds, cpu))
        print(self.phases[-1].line(), flush=True)

    def broker_cpu(self, meter: CpuMeter, count: int) -> dict[str, float]:
        if "broker" not in meter.pids:
            return {}
        return {
            "broker": meter.per_event_us(["broker"], count),
            "broker net of idle": meter.per_event_us(["broker (net)"], count),
        }

    async def delivery_phase(
        self, platform: SoakPlatform, http: aiohttp.ClientSession, pids: dict[str, int], n: int
    ) -> None:
        count = self.args.events
        meter = CpuMeter(pids, await asyncio.to_thread(self.idle, pids))
        seen: list[float] = []
        if await receiver_count(http, self.control, []):
            raise RuntimeError("deliveries arrived while the delivery workers were stopped")
        meter.start()
        platform.signal_all(DELIVERY, signal.SIGCONT)
        while await receiver_count(http, self.control, seen) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        meter.stop()
        workers = [w.name for w in platform.of_kind(DELIVERY)]
        cpu = {"delivery": meter.per_event_us(workers, count)}
        cpu.update(self.broker_cpu(meter, count))
        cpu["receiver"] = meter.per_event_us(["receiver"], count)
        cpu.update({name: meter.per_event_us([name], count) for name in workers if n > 1})
        # The rate from the first to the last POST: the time to wake up is not delivery's.
        seconds = max(seen) - min(seen) if len(seen) > 1 else meter.seconds
        self.phases.append(Phase("delivery", n, count, seconds, cpu))
        print(self.phases[-1].line(), flush=True)

    async def gateway_phases(
        self,
        platform: SoakPlatform,
        http: aiohttp.ClientSession,
        token: str,
        pids: dict[str, int],
        n: int,
    ) -> None:
        for batch in (1, 20):
            count = self.args.gateway_events
            events = self.events(count)
            bodies = [
                "[" + ",".join(e.to_json() for e in events[i : i + batch]) + "]"
                for i in range(0, count, batch)
            ]
            meter = CpuMeter({"gateway": pids["gateway"]})
            meter.start()
            await post_all(http, f"{platform.gateway_url}/v1/events", token, bodies)
            meter.stop()
            cpu = {"gateway": meter.per_event_us(["gateway"], count)}
            self.phases.append(Phase(f"gateway, batches of {batch}", n, count, meter.seconds, cpu))
            print(self.phases[-1].line(), flush=True)


async def post_all(http: aiohttp.ClientSession, url: str, token: str, bodies: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            async with http.post(url, data=queue.pop(), headers=headers) as response:
                if response.status != 202:
                    raise RuntimeError(f"gateway answered {response.status}")
                await response.read()

    await asyncio.gather(*(worker() for _ in range(8)))


def run_config(scaling: Scaling, n: int, log: Callable[[str], None]) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings().model_copy(
        update={
            "topic_prefix": f"scale{run}.",
            "registry_topic": f"_schemas_scale{run}",
            "partitions": scaling.args.partitions,
        }
    )
    token = f"scale_{run}"
    logs = Path(tempfile.mkdtemp(prefix=f"cpevents-scaling-{run}-"))
    platform = SoakPlatform(
        settings, logs, {**throwaway_environment(token), **ENV}, n, n,
        ephemeral_kafka=not settings.bootstrap_servers,
    )  # fmt: skip
    try:
        platform.start(log)
        asyncio.run(scaling.measure(platform, token, n))
    finally:
        platform.signal_all(ROUTER, signal.SIGCONT)
        platform.signal_all(DELIVERY, signal.SIGCONT)
        platform.stop()


def print_summary(args: argparse.Namespace, phases: list[Phase], load: tuple[Any, ...]) -> None:
    print("\n== summary ==")
    print(f"command: {' '.join(sys.argv)}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; cores: {os.cpu_count()}; "
          f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        f"partitions {args.partitions}; events per phase {args.events}; {TENANTS} tenants, "
        f"one webhook each, {ENDPOINTS} endpoints in one receiver process"
    )
    for phase in phases:
        print(phase.line())
    print(f"medians over {args.rounds} round(s), configurations alternated (range in brackets):")
    groups: dict[tuple[str, int], list[Phase]] = {}
    for phase in phases:
        groups.setdefault((phase.name, phase.workers), []).append(phase)
    for (name, workers), runs in groups.items():
        rates = [p.rate for p in runs]
        keys = [k for k in runs[0].cpu_us if "-" not in k]  # totals, not each worker's share
        cpu = ", ".join(
            f"{k} {statistics.median(p.cpu_us.get(k, 0.0) for p in runs):.0f}" for k in keys
        )
        print(
            f"  {name:<22} workers {workers}: {statistics.median(rates):7.0f}/s "
            f"[{min(rates):.0f}-{max(rates):.0f}]   CPU µs/event: {cpu}"
        )
    for name in ("router", "delivery"):
        base = groups.get((name, args.workers[0]))
        if not base:
            continue
        one = statistics.median(p.rate for p in base)
        ratios = ", ".join(
            f"{workers}: x{statistics.median(p.rate for p in runs) / one:.2f}"
            for (kind, workers), runs in groups.items()
            if kind == name
        )
        print(f"{name} throughput relative to {args.workers[0]} worker(s): {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--gateway-events", type=int, default=3000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the worker counts, alternated"
    )
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    load = os.getloadavg()
    receiver, control, ports = start_receiver(ENDPOINTS)
    scaling = Scaling(args, control, ports)
    scaling.receiver_pid = receiver.pid or 0
    try:
        for round_ in range(args.rounds):
            for n in args.workers:
                print(f"-- round {round_ + 1}: {n} router(s), {n} delivery worker(s)", flush=True)
                run_config(scaling, n, lambda message: print(f"  {message}", file=sys.stderr))
    finally:
        receiver.terminate()
    print_summary(args, scaling.phases, load)


if __name__ == "__main__":
    main()
