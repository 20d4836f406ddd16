"""The soak's webhook receivers: one process serving many endpoints (one port each), recording
every POST and answering as each endpoint's current behaviour says.

An endpoint is a port, because the delivery worker's lanes, per-endpoint limit and breaker are
per (scheme, host, port): endpoints on one port would share them and a hanging one would hold
the healthy ones. Behaviours (set at any time through ``POST /control`` on the control port):

- ``ok``: 204 at once;
- ``flaky``: 503 with probability ``p``, else 204;
- ``hang``: answers 504 only after ``hang`` seconds (longer than the delivery timeout, so the
  worker has given up by then);
- ``down``: 503 at once (an outage);
- ``gone``: 410 (the worker disables the webhook).

``GET /drain`` on the control port returns what arrived since the last drain, as lists
``[received_at, event_id, webhook_id_header, port, status]``, and forgets it (the soak keeps
the totals), so the receiver's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

BEHAVIOURS = ("ok", "flaky", "hang", "down", "gone")


@dataclass
class Behaviour:
    """How one endpoint answers now."""

    mode: str = "ok"
    p: float = 0.0
    hang: float = 0.0


@dataclass
class ReceiverState:
    """Behaviours by port and the arrivals not drained yet."""

    behaviours: dict[int, Behaviour] = field(default_factory=dict)
    arrivals: list[list[Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def status_for(self, port: int) -> tuple[int, float]:
        """The status to answer on ``port`` and how long to wait before answering."""
        behaviour = self.behaviours.get(port, Behaviour())
        mode = behaviour.mode
        if mode == "flaky":
            return (503 if self.rng.random() < behaviour.p else 204), 0.0
        if mode == "hang":
            return 504, behaviour.hang
        if mode == "down":
            return 503, 0.0
        if mode == "gone":
            return 410, 0.0
        return 204, 0.0


def event_id_of(body: bytes) -> str:
    """The ``id`` of the event in a webhook body ("" if the body is not an event)."""
    try:
        value = json.loads(body).get("id", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def make_endpoint_app(state: ReceiverState, port_box: list[int]) -> web.Application:
    """The app of one endpoint; its port is put in ``port_box`` once bound."""

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        port = port_box[0]
        status, delay = state.status_for(port)
        if delay:
            await asyncio.sleep(delay)
        # Recorded when answered: a hanging endpoint's POST counts when it finally answers.
        state.arrivals.append(
            [time.time(), event_id_of(body), request.headers.get("webhook-id", ""), port, status]
        )
        return web.Response(status=status)

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", post)
    return app


def make_control_app(state: ReceiverState) -> web.Application:
    async def control(request: web.Request) -> web.Response:
        changes: dict[str, dict[str, Any]] = await request.json()
        for port, spec in changes.items():
            if spec.get("mode") not in BEHAVIOURS:
                return web.Response(status=422, text=f"unknown mode {spec.get('mode')!r}")
            state.behaviours[int(port)] = Behaviour(
                spec["mode"], float(spec.get("p", 0.0)), float(spec.get("hang", 0.0))
            )
        return web.Response(status=204)

    async def drain(request: web.Request) -> web.Response:
        taken, state.arrivals = state.arrivals, []
        return web.json_response(taken)

    app = web.Application()
    app.router.add_post("/control", control)
    app.router.add_get("/drain", drain)
    return app


async def serve(endpoints: int, reply: Connection, parent: int) -> None:
    """Serve a control port and ``endpoints`` endpoint ports (all chosen by the OS: a port
    picked beforehand could be taken meanwhile) until cancelled; send ``[control, *ports]``
    through ``reply`` once listening."""
    state = ReceiverState()
    runners, ports = [], []
    for index in range(endpoints + 1):
        port_box: list[int] = []
        app = make_control_app(state) if index == 0 else make_endpoint_app(state, port_box)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = _bound_socket()
        await web.SockSite(runner, sock).start()
        port: int = sock.getsockname()[1]
        port_box.append(port)
        ports.append(port)
        runners.append(runner)
    reply.send(ports)
    try:
        await _until_orphaned(parent)
    finally:
        for runner in runners:
            await runner.cleanup()


async def _until_orphaned(parent: int) -> None:
    """Return once process ``parent`` is no longer the parent: a soak killed by a crash must
    not leave its receivers (multiprocessing ends daemon children only on a normal exit)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells of the parent's death)
        await asyncio.sleep(1)


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def run_receiver(endpoints: int, reply: Connection, parent: int) -> None:
    """Process entry point (``multiprocessing.Process(target=run_receiver, ...)``); the
    receiver exits when process ``parent`` is gone."""
    asyncio.run(serve(endpoints, reply, parent))


def start_receiver(endpoints: int) -> tuple[multiprocessing.Process, str, list[int]]:
    """A receiver process with ``endpoints`` endpoints: the process, its control URL and its
    endpoint ports."""
    mine, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=run_receiver,
        args=(endpoints, theirs, os.getpid()),
        daemon=True,
        name="soak-receiver",
    )
    process.start()
    if not mine.poll(60):
        process.terminate()
        raise RuntimeError("the receiver process did not start")
    control, *ports = mine.recv()
    return process, f"http://127.0.0.1:{control}", ports
