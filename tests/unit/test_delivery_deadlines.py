"""The total-time limit of attempts: one sweep cuts those past it, and only those."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from delivery.config import DeliveryConfig
from delivery.deadlines import Deadlines
from delivery.outcome import Verdict
from delivery.sender import Sender
from plumbing.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def attempt(deadlines: Deadlines, release: asyncio.Event) -> str:
    """An attempt the way Sender.post makes one: start, await, finish; 'timeout' if cut."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.start(task)
    try:
        await release.wait()
        return "answered"
    except asyncio.CancelledError:
        if not deadlines.cut(task):
            raise
        return "timeout"
    finally:
        deadlines.finish(task)


async def test_only_attempts_past_their_deadline_are_cut() -> None:
    clock, release = Clock(), asyncio.Event()
    deadlines = Deadlines(10.0, clock)
    early = asyncio.create_task(attempt(deadlines, release))
    await asyncio.sleep(0)
    clock.now += 5
    late = asyncio.create_task(attempt(deadlines, release))
    await asyncio.sleep(0)
    assert deadlines.sweep() == 0
    clock.now += 5  # the first is due now (deadline reached), the second in 5 s
    assert deadlines.sweep() == 1
    assert deadlines.sweep() == 0, "an attempt is cut once"
    assert await early == "timeout"
    assert early.cancelling() == 0, "the deadline's cancel is taken back"
    release.set()
    assert await late == "answered"
    assert len(deadlines) == 0


async def test_a_cancel_from_elsewhere_propagates_even_when_the_deadline_also_cut() -> None:
    clock, release = Clock(), asyncio.Event()
    deadlines = Deadlines(1.0, clock)
    shut_down = asyncio.create_task(attempt(deadlines, release))
    both = asyncio.create_task(attempt(deadlines, release))
    await asyncio.sleep(0)
    shut_down.cancel()  # e.g. the worker's shutdown
    clock.now += 2
    both.cancel()
    assert deadlines.sweep() == 2
    for task in (shut_down, both):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(deadlines) == 0


@contextlib.asynccontextmanager
async def hanging_endpoint() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A local endpoint that never answers: its URL, and an event set once a request came."""
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(60)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hang", hang)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hang", arrived
    finally:
        await runner.cleanup()


def sender_config(timeout: float) -> DeliveryConfig:
    settings = Settings(delivery_allowed_networks=("127.0.0.0/8",), delivery_timeout=timeout)
    return DeliveryConfig.from_settings(settings)


async def test_the_sender_cuts_a_hanging_endpoint_at_the_total_timeout() -> None:
    async with hanging_endpoint() as (url, arrived), Sender(sender_config(0.5)) as sender:
        result = await sender.post(url, b"{}", {})
    assert arrived.is_set()
    assert (result.status, result.outcome.verdict) == (0, Verdict.RETRY)
    assert result.outcome.reason == "timeout after 0.5s"
    # Never before the limit (the endpoint would hang for a minute: a result at all is a cut).
    assert result.duration_ms >= 500


async def test_a_lane_cut_twice_goes_on_posting() -> None:
    """A lane's task makes attempt after attempt: each cut must leave it uncancelled."""
    async with hanging_endpoint() as (url, _arrived), Sender(sender_config(0.3)) as sender:
        task = asyncio.current_task()
        assert task is not None
        for _ in range(2):
            result = await sender.post(url, b"{}", {})
            assert result.outcome.reason == "timeout after 0.3s"
            assert task.cancelling() == 0
        await asyncio.sleep(0)  # a cancel still pending would be raised here


async def test_the_sender_lets_a_shutdown_cancel_through() -> None:
    async with hanging_endpoint() as (url, arrived), Sender(sender_config(30)) as sender:
        post = asyncio.create_task(sender.post(url, b"{}", {}))
        await arrived.wait()
        post.cancel()  # what the worker's shutdown does to an attempt still in flight
        with pytest.raises(asyncio.CancelledError):
            await post
