"""The soak's run on a started platform: webhooks, warm-up, load, churn, faults, reports, drain.

Everything here runs in one event loop; blocking calls (worker restarts, the cluster CLI, lag
reads) go to threads. The ledger (bench/soak_ledger.py) has this loop as its only writer: the
observer thread and the receivers' arrivals are applied by :meth:`SoakDriver.pump`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.soak_lag import lag_in_subprocess
from bench.soak_ledger import Ledger
from bench.soak_observer import Observer
from bench.soak_plan import (
    PUBLISHED_TYPES,
    RETRY_TIERS,
    SETTLE_SECONDS,
    SOAK_ENV,
    STABLE_WEBHOOKS,
    TENANTS,
    Fault,
    behaviours,
    fault_schedule,
    payload,
    stable_webhooks,
    tenant,
)
from bench.soak_report import interval_line, summary
from bench.soak_stack import SoakPlatform, busiest_node, kill_node, start_node
from bench.soak_stack import wait_node_alive as node_alive
from producers.kafka_bus import KafkaBus
from schemas.event import Event
from schemas.filters import Predicate, compile_filter
from streams.matching import Subscription, event_document

Matcher = tuple[str, Subscription, Predicate | None]
RESTART_AFTER = 5.0  # seconds a killed worker stays dead
BROKER_DOWN = 30.0  # seconds a killed broker stays dead
MAX_BATCH = 200  # events per request or publish_many at most, however far behind


class SoakDriver:
    """One soak run; :meth:`run` returns the exit code (1 if anything was lost)."""

    def __init__(
        self,
        args: argparse.Namespace,
        platform: SoakPlatform,
        token: str,
        controls: list[str],
        ports: list[int],
        rng: random.Random,
    ) -> None:
        self.args = args
        self.platform = platform
        self.settings = platform.settings
        self.auth = {"Authorization": f"Bearer {token}"}
        self.controls = controls
        self.stable_ports = ports[:STABLE_WEBHOOKS]
        self.spare_ports = ports[STABLE_WEBHOOKS:]
        self.rng = rng
        self.ledger = Ledger()
        self.observer = Observer(self.settings)
        self.matchers: dict[str, list[Matcher]] = {}
        self.ports_by_role: dict[str, list[int]] = {}
        self.dynamic: list[str] = []
        self.faults: list[tuple[float, str]] = []
        self.load_seconds = args.minutes * 60
        self.t0 = time.monotonic()
        self.seq = 0

    def note(self, what: str) -> None:
        at = time.monotonic() - self.t0
        self.faults.append((at, what))
        print(f"  [{at:7.1f}s] {what}", flush=True)

    # -- set-up ----------------------------------------------------------------------------------

    async def setup_webhooks(self, http: aiohttp.ClientSession) -> None:
        for spec, port in zip(stable_webhooks(), self.stable_ports, strict=True):
            body = spec.body(f"http://127.0.0.1:{port}/hook/{spec.slot}")
            webhook_id = await self.create_webhook(http, body)
            self.ledger.webhook_of_port[port] = webhook_id
            accepts = compile_filter(spec.filter) if spec.filter is not None else None
            matcher = (webhook_id, Subscription.compile(spec.events), accepts)
            self.matchers.setdefault(spec.tenant, []).append(matcher)
            self.ports_by_role.setdefault(spec.role, []).append(port)
            if spec.role == "healthy":
                self.ledger.healthy.add(webhook_id)

    async def create_webhook(self, http: aiohttp.ClientSession, body: dict[str, Any]) -> str:
        url = f"{self.platform.gateway_url}/v1/webhooks"
        async with http.post(url, json=body, headers=self.auth) as response:
            if response.status != 201:
                raise RuntimeError(
                    f"webhook not created: {response.status} {await response.text()}"
                )
            webhook_id: str = (await response.json())["id"]
            return webhook_id

    async def warm_up(
        self, http: aiohttp.ClientSession, bus: KafkaBus, within: float = 180
    ) -> None:
        """Probe events until every stable endpoint answered one: the routers and delivery
        workers then have every webhook (probes are not tracked: the ledger never saw them)."""
        waiting = set(self.stable_ports)
        deadline = time.monotonic() + within
        while waiting and time.monotonic() < deadline:
            probes = [
                Event.new(kind, tenant(i)).with_payload({"replicas": 3})
                for i in range(TENANTS)
                for kind in ("instance.created", "health.passed")
            ]
            await bus.publish_many(probes)
            for _ in range(10):
                await asyncio.sleep(0.5)
                for arrivals in await self.drain_receivers(http):
                    waiting.discard(int(arrivals[3]))
                if not waiting:
                    break
        if waiting:
            raise RuntimeError(f"{len(waiting)} endpoints never received a warm-up probe")

    # -- inputs ----------------------------------------------------------------------------------

    def expected_webhooks(self, event: Event) -> list[str]:
        found = []
        document: dict[str, Any] | None = None
        for webhook_id, subscription, accepts in self.matchers.get(event.tenant_id, ()):
            if not subscription.matches(event.type):
                continue
            if accepts is not None:
                document = document if document is not None else event_document(event)
                if not accepts(document):
                    continue
            found.append(webhook_id)
        return found

    def make_events(self, count: int) -> list[Event]:
        events = []
        for _ in range(count):
            self.seq += 1
            kind = self.rng.choice(PUBLISHED_TYPES)
            body = payload(self.seq, self.rng.random())
            events.append(Event.new(kind, tenant(self.rng.randrange(TENANTS))).with_payload(body))
        return events

    def sending(self, events: list[Event]) -> float:
        at = time.time()
        for event in events:
            self.ledger.sending(event.id, at)
        return at

    def record(self, events: list[Event], at: float, confirmed: bool) -> None:
        for event in events:
            self.ledger.published(event.id, at, self.expected_webhooks(event), confirmed)

    async def drain_receivers(self, http: aiohttp.ClientSession) -> list[list[Any]]:
        found: list[list[Any]] = []
        for control in self.controls:
            try:
                async with http.get(f"{control}/drain") as response:
                    found.extend(await response.json())
            except aiohttp.ClientError as exc:
                print(f"  receiver {control} not drained: {exc}", flush=True)
        return found

    async def pump(self, http: aiohttp.ClientSession) -> None:
        """Apply what the observer read and what the receivers recorded."""
        ledger = self.ledger
        now = time.time()
        for item in self.observer.take():
            kind = item[0]
            if kind == "routed":
                ledger.routed(item[1], item[2], now)
            elif kind == "attempt":
                ledger.attempt(item[1], item[2], item[3], item[4])
            elif kind == "dead_letter":
                ledger.dead_letter(item[1], item[2], item[3])
            else:
                ledger.router_dead_letter(item[1])
        for at, event_id, header, port, status in await self.drain_receivers(http):
            ledger.receipt(at, event_id, header, int(port), int(status))

    async def pump_loop(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.pump(http)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    # -- load ------------------------------------------------------------------------------------

    async def paced(
        self, rate: float, until: float, send: Callable[[int], Awaitable[None]]
    ) -> None:
        """Call ``send(n)`` about every 100 ms with the events due at ``rate`` per second since
        the start: a slow send (a broker fault) makes the next batches bigger, up to
        ``MAX_BATCH``, so the offered load stays what was asked rather than what was served."""
        started = time.monotonic()
        sent = 0
        while (now := time.monotonic()) < until:
            due = min(int(rate * (now - started)) - sent, MAX_BATCH)
            if due > 0:
                await send(due)
                sent += due
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - now)))

    async def gateway_producer(
        self, http: aiohttp.ClientSession, rate: float, until: float
    ) -> None:
        url = f"{self.platform.gateway_url}/v1/events"
        headers = {**self.auth, "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=15)

        async def send(count: int) -> None:
            events = self.make_events(count)
            body = "[" + ",".join(e.to_json() for e in events) + "]"
            at = self.sending(events)
            try:
                async with http.post(url, data=body, headers=headers, timeout=timeout) as answer:
                    confirmed = answer.status == 202
                    await answer.read()
            except (aiohttp.ClientError, TimeoutError):
                confirmed = False
            self.record(events, at, confirmed)

        await self.paced(rate, until, send)

    async def bus_producer(self, bus: KafkaBus, rate: float, until: float) -> None:
        async def send(count: int) -> None:
            events = self.make_events(count)
            at = self.sending(events)
            try:
                await asyncio.wait_for(bus.publish_many(events), 30)
                confirmed = True
            except Exception as exc:  # a broker fault: the outcome is unknown, not expected
                print(f"  KafkaBus.publish_many failed: {type(exc).__name__}: {exc}", flush=True)
                confirmed = False
            self.record(events, at, confirmed)

        await self.paced(rate, until, send)

    async def churn(self, http: aiohttp.ClientSession, until: float) -> None:
        """Webhook changes on the way: create, re-filter, create, delete, … on spare endpoints."""
        every = max(8.0, self.load_seconds / 16)
        step = 0
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            try:
                await self.churn_step(http, step)
            except (aiohttp.ClientError, RuntimeError) as exc:
                self.note(f"webhook change failed: {exc}")
            step += 1

    async def churn_step(self, http: aiohttp.ClientSession, step: int) -> None:
        base = f"{self.platform.gateway_url}/v1/webhooks"
        action = ("create", "filter", "create", "delete")[step % 4]
        if action == "create" or not self.dynamic:
            if not self.spare_ports:
                return
            port = self.spare_ports.pop(0)
            body = {
                "tenant_id": tenant(self.rng.randrange(TENANTS)),
                "url": f"http://127.0.0.1:{port}/hook/dyn",
                "events": ["instance.*", "deploy.*"],
            }
            webhook_id = await self.create_webhook(http, body)
            self.ledger.webhook_of_port[port] = webhook_id
            self.dynamic.append(webhook_id)
            self.note(f"webhook {webhook_id} created")
        elif action == "filter":
            webhook_id = self.dynamic[-1]
            change = {"filter": {"payload": {"region": "eu"}}}
            async with http.patch(f"{base}/{webhook_id}", json=change, headers=self.auth) as r:
                self.note(f"webhook {webhook_id} filter set to region=eu: {r.status}")
        else:
            webhook_id = self.dynamic.pop(0)
            self.ledger.deleted.add(webhook_id)  # what is not sent to it is not lost
            async with http.delete(f"{base}/{webhook_id}", headers=self.auth) as r:
                self.note(f"webhook {webhook_id} deleted: {r.status}")

    # -- faults ----------------------------------------------------------------------------------

    async def run_faults(self, http: aiohttp.ClientSession) -> None:
        running = []
        for fault in fault_schedule(self.load_seconds, self.args.cluster):
            await asyncio.sleep(max(0.0, self.t0 + fault.at - time.monotonic()))
            running.append(asyncio.create_task(self.fault(http, fault)))
        for outcome in await asyncio.gather(*running, return_exceptions=True):
            if isinstance(outcome, BaseException):
                self.note(f"fault failed: {type(outcome).__name__}: {outcome}")

    async def fault(self, http: aiohttp.ClientSession, fault: Fault) -> None:
        if fault.action == "behave":
            change = behaviours(fault.detail, self.ports_by_role)
            for control in self.controls:
                async with http.post(f"{control}/control", json=change) as response:
                    response.raise_for_status()
            self.note(f"endpoints: {fault.detail} ({len(change)} endpoints)")
        elif fault.action == "kill":
            await self.kill_worker(fault.detail)
        else:
            await self.kill_broker()

    async def kill_worker(self, kind: str) -> None:
        worker = self.platform.of_kind(kind)[0]
        pid = worker.pid
        await asyncio.to_thread(self.platform.kill, worker)
        self.note(f"SIGKILL {worker.name} (pid {pid})")
        await asyncio.sleep(RESTART_AFTER)
        await asyncio.to_thread(self.platform.restart, worker, lambda _: None)
        self.note(f"{worker.name} restarted (pid {worker.pid}), its group stable again")

    async def kill_broker(self) -> None:
        node = await asyncio.to_thread(busiest_node)
        await asyncio.to_thread(kill_node, node)
        self.note(f"SIGKILL broker node {node} (the one leading the most partitions)")
        await asyncio.sleep(BROKER_DOWN)
        await asyncio.to_thread(start_node, node)
        alive = await asyncio.to_thread(node_alive, node)
        self.note(f"broker node {node} restarted ({'alive' if alive else 'NOT alive'})")

    # -- reports ---------------------------------------------------------------------------------

    async def report(self, seconds: float) -> None:
        lag = await asyncio.to_thread(lag_in_subprocess, self.settings)
        overdue = self.ledger.pending(older_than=time.time() - SETTLE_SECONDS)
        window = self.ledger.take_window()
        elapsed = time.monotonic() - self.t0
        print(interval_line(elapsed, seconds, window, self.ledger, overdue, lag), flush=True)

    async def reporter(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.interval)
            now = time.monotonic()
            await self.report(now - last)
            last = now

    # -- the run ---------------------------------------------------------------------------------

    async def drain(self, http: aiohttp.ClientSession) -> None:
        """Wait until every expected delivery is settled (or ``--drain`` seconds passed)."""
        deadline = time.monotonic() + self.args.drain
        quiet = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            await self.pump(http)
            # Settled twice in a row, 2 s apart: the observer has caught up too.
            quiet = quiet + 1 if self.ledger.pending() == 0 else 0
            if quiet >= 2:
                return

    async def load(self, http: aiohttp.ClientSession, bus: KafkaBus) -> None:
        until = self.t0 + self.load_seconds
        rate = self.args.rate
        faults = asyncio.create_task(self.run_faults(http))
        await asyncio.gather(
            self.gateway_producer(http, rate / 4, until),
            self.gateway_producer(http, rate / 4, until),
            self.bus_producer(bus, rate / 2, until),
            self.churn(http, until),
        )
        self.note("load ended")
        await faults  # a restart still under way finishes before the drain starts

    async def run(self) -> int:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            bus = KafkaBus(self.settings)
            try:
                await self.setup_webhooks(http)
                await self.warm_up(http, bus)
                self.observer.start()
                stop = asyncio.Event()
                self.t0 = time.monotonic()
                background = [
                    asyncio.create_task(self.pump_loop(http, stop)),
                    asyncio.create_task(self.reporter(stop)),
                ]
                await self.load(http, bus)
                self.note("draining")
                await self.drain(http)
                stop.set()
                await asyncio.gather(*background)
                await self.pump(http)
            finally:
                await bus.close()
                self.observer.close()
        total = time.monotonic() - self.t0
        note = (f"retry tiers {list(RETRY_TIERS)}, {SOAK_ENV}, {self.args.partitions} partitions, "
                f"{self.args.routers} routers, {self.args.deliveries} delivery workers, "
                f"rate {self.args.rate}/s")  # fmt: skip
        for line in summary(self.ledger, self.load_seconds, total, self.faults, note):
            print(line, flush=True)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"soak process: peak RSS {peak_mb:.0f} MB, CPU {time.process_time():.0f} s, "
              f"{len(self.ledger.entries)} ledger entries, {self.observer.read} records observed "
              f"({self.observer.undecodable} undecodable)", flush=True)  # fmt: skip
        return 1 if self.ledger.lost() else 0
