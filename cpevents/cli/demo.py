"""``cpevents demo``: the whole pipeline on the embedded default, shown live, then exit.

A throwaway Kafka (unless CPEVENTS_BOOTSTRAP_SERVERS is set), the registry, the gateway, a
router and a delivery worker; two built-in receivers, one healthy and one always failing; a
webhook on each; one event per subsystem through the gateway. The deliveries table shows the
healthy endpoint's signed deliveries and the failing one retried, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from rich.live import Live
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from cpevents.cli.dev import platform_services
from delivery.signing import WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, signature
from schemas.samples import sample_events

if TYPE_CHECKING:
    # Only for annotations: the local stack and broker are dev-only tooling, imported by the
    # command itself so that loading the CLI (e.g. for a production worker) never loads them.
    from cpevents.stack import LocalStack

DEMO_TENANT = "ten_demo"
# Short tiers so the failing endpoint reaches the dead-letter topic within seconds.
DEMO_RETRY_TIERS = ("1s", "2s")


def _free_port() -> int:
    from cpevents.localkafka.broker import free_port  # dev-only tooling: imported on use

    return free_port()


@dataclass
class Receivers:
    """Two local endpoints: ``/ok`` verifies Standard Webhooks signatures, ``/fail`` answers 500."""

    port: int = field(default_factory=_free_port)
    secrets: dict[str, str] = field(default_factory=dict)  # path -> signing secret
    valid: int = 0
    invalid: int = 0
    failed: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _ok(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self.secrets.get("/ok", "")
        expected = signature(
            secret, request.headers[WEBHOOK_ID], int(request.headers[WEBHOOK_TIMESTAMP]), body
        )
        offered = request.headers.get(WEBHOOK_SIGNATURE, "").split()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            self.valid += 1
            return web.Response(status=204)
        self.invalid += 1
        return web.Response(status=401)

    async def _fail(self, request: web.Request) -> web.Response:
        self.failed += 1
        return web.Response(status=500, text="the demo's failing endpoint always fails")

    def start(self) -> Callable[[], None]:
        """Serve in a background thread; returns the function that stops serving."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        stopping = asyncio.Event()

        async def main() -> None:
            application = web.Application()
            application.router.add_post("/ok", self._ok)
            application.router.add_post("/fail", self._fail)
            runner = web.AppRunner(application, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            started.set()
            await stopping.wait()
            await runner.cleanup()

        thread = threading.Thread(
            target=loop.run_until_complete, args=(main(),), name="demo-receivers", daemon=True
        )
        thread.start()
        started.wait(10)

        def stop() -> None:
            loop.call_soon_threadsafe(stopping.set)
            thread.join(10)

        return stop


def _call(method: str, url: str, token: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _table(deliveries: list[dict[str, Any]], names: dict[str, str], types: dict[str, str]) -> Table:
    table = Table("delivery", "webhook", "event", "status", "tries", "HTTP", title="deliveries")
    colour = {"delivered": "green", "retrying": "yellow", "dead_lettered": "red"}
    for item in sorted(deliveries, key=lambda d: (names.get(d["webhook_id"], ""), d["id"])):
        status = item["status"]
        table.add_row(
            item["id"][:12] + "…",
            names.get(item["webhook_id"], item["webhook_id"]),
            types.get(item["event_id"], item["event_id"]),
            f"[{colour.get(status, 'white')}]{status}[/]",
            str(item["attempts"]),
            str(item.get("status_code") or ""),
        )
    return table


@app.command()
def demo(
    timeout: float = 120.0,
    keep: bool = False,
) -> None:
    """Run the whole pipeline locally: deliveries, a retry and a dead letter, live; then exit."""
    from cpevents.stack import LocalStack, StackError, StackPorts, throwaway_environment

    base = load_settings()
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "retry_tiers": DEMO_RETRY_TIERS,
            # On a shared cluster the demo keeps to topics of its own.
            "topic_prefix": f"{base.topic_prefix}demo{run}."
            if base.bootstrap_servers
            else base.topic_prefix,
            "registry_topic": f"_schemas-demo{run}"
            if base.bootstrap_servers
            else base.registry_topic,
        }
    )
    token = f"demo_{uuid.uuid4().hex}"
    extra_env = throwaway_environment(token)
    receivers = Receivers()
    stop_receivers = receivers.start()
    with tempfile.TemporaryDirectory(prefix="cpevents-demo-") as logs:
        stack = LocalStack(
            settings,
            platform_services,
            StackPorts.free(),
            Path(logs),
            extra_env,
            ephemeral_kafka=True,
        )
        console.print(
            "[bold]Ctrl Plane Events demo[/bold] — starting the stack "
            "(first run downloads Kafka with Maven)…"
        )
        try:
            with stack.running(on_progress=lambda message: console.print(f"  {message}")):
                ok = _run_demo(stack, receivers, token, timeout, keep)
        except StackError as exc:
            err_console.print(f"[red]demo failed to start:[/red] {exc}")
            raise SystemExit(1) from None
        finally:
            stop_receivers()
    console.print("stack stopped")
    raise SystemExit(0 if ok else 1)


def _run_demo(
    stack: LocalStack, receivers: Receivers, token: str, timeout: float, keep: bool = False
) -> bool:
    gateway = f"http://127.0.0.1:{stack.ports.gateway}"
    healthy = _call(
        "POST",
        f"{gateway}/v1/webhooks",
        token,
        {"tenant_id": DEMO_TENANT, "url": receivers.url("/ok"), "events": []},
    )
    receivers.secrets["/ok"] = healthy["secret"]
    failing = _call(
        "POST",
        f"{gateway}/v1/webhooks",
        token,
        {"tenant_id": DEMO_TENANT, "url": receivers.url("/fail"), "events": ["deploy.*"]},
    )
    names = {healthy["id"]: "ok", failing["id"]: "failing"}
    console.print(
        f"webhooks: {healthy['id']} → {receivers.url('/ok')} (every event), "
        f"{failing['id']} → {receivers.url('/fail')} (deploy.*, always HTTP 500)"
    )

    events = sample_events(DEMO_TENANT)
    ids = _call("POST", f"{gateway}/v1/events", token, [e.to_json_dict() for e in events])["ids"]
    types = {event.id: str(event.type) for event in events}
    console.print(
        f"published {len(ids)} events through the gateway: " + ", ".join(types[i] for i in ids)
    )

    expected_ok, expected_dead = len(events), sum(1 for e in events if e.type.startswith("deploy."))
    seen: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    deliveries: list[dict[str, Any]] = []
    with Live(_table([], names, types), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            deliveries = _call("GET", f"{gateway}/v1/deliveries", token)["deliveries"]
            for item in deliveries:
                state = (item["status"], item["attempts"])
                if seen.get(item["id"]) != state:
                    seen[item["id"]] = state
                    live.console.print(
                        f"  {names[item['webhook_id']]:>7} {types[item['event_id']]:<18}"
                        f" attempt {item['attempts']}: {item['status']}"
                        + (f" (HTTP {item['status_code']})" if item.get("status_code") else "")
                    )
            live.update(_table(deliveries, names, types))
            delivered = [d for d in deliveries if d["status"] == "delivered"]
            dead = [d for d in deliveries if d["status"] == "dead_lettered"]
            if len(delivered) >= expected_ok and len(dead) >= expected_dead:
                break
            time.sleep(0.3)
    console.print()
    dead_letters = [d for d in deliveries if d["status"] == "dead_lettered"]
    retried = max((d["attempts"] for d in dead_letters), default=0) - 1
    console.print(
        f"delivered: {receivers.valid} with valid signatures ({receivers.invalid} invalid); "
        f"failing endpoint called {receivers.failed} times (retried {max(retried, 0)} times), "
        f"dead letters: {len(dead_letters)}"
    )
    ok = (
        receivers.valid >= expected_ok
        and receivers.invalid == 0
        and len(dead_letters) == expected_dead
    )
    console.print("[green]demo complete[/green]" if ok else "[red]demo incomplete[/red]")
    _portal(gateway, token, keep)
    return ok


def _portal(gateway: str, token: str, keep: bool) -> None:
    """Print a portal link to the demo tenant's endpoints, deliveries and dead letters; with
    ``--keep``, hold the stack up (until Ctrl-C) so the link can be opened."""
    from cpevents.stack import portal_link

    link = portal_link(gateway, token, DEMO_TENANT, expires_in=3600)
    note = "until Ctrl-C" if keep else "while the stack runs: `cpevents demo --keep` holds it"
    console.print(f"portal ({note}):")
    console.print(f"  {link}", markup=False, highlight=False, soft_wrap=True)
    if keep:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
