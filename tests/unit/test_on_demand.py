"""``OnDemand``: a reader started by the first request, kept while requests come, stopped (and
dropped) after an idle period, started afresh by the next request (producers/on_demand.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from producers.on_demand import OnDemand


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Readers:
    """Makes numbered readers and records which were stopped."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.stopped: list[int] = []

    async def start(self) -> int:
        await asyncio.sleep(0)  # a start takes a while: concurrent requests must share it
        self.started.append(len(self.started) + 1)
        return self.started[-1]

    def stop(self, reader: int) -> None:
        self.stopped.append(reader)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop (and the stopping thread) run until ``condition`` holds (at most ~10 s)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)


def test_nothing_runs_until_a_request_needs_it_and_concurrent_requests_share_one() -> None:
    async def scenario() -> None:
        readers = Readers()
        on_demand = OnDemand("test", readers.start, readers.stop, idle=30, clock=Clock())
        assert on_demand.current is None
        assert readers.started == []
        assert await asyncio.gather(on_demand.get(), on_demand.get(), on_demand.get()) == [1, 1, 1]
        assert readers.started == [1]
        assert on_demand.current == 1
        await on_demand.close()
        assert readers.stopped == [1]
        assert on_demand.current is None

    asyncio.run(scenario())


def test_stops_after_the_idle_period_and_requests_keep_it_live() -> None:
    async def scenario() -> None:
        clock = Clock()
        readers = Readers()
        # A real (tiny) idle period lets the reaper's sleeps end; the clock decides.
        on_demand = OnDemand("test", readers.start, readers.stop, idle=0.01, clock=clock)
        assert await on_demand.get() == 1
        for _ in range(3):  # requests within the idle period keep the same reader
            clock.now += 0.005
            assert await on_demand.get() == 1
            await asyncio.sleep(0.02)
            assert readers.stopped == []
        clock.now += 0.02
        await until(lambda: readers.stopped == [1])
        assert readers.stopped == [1]
        assert on_demand.current is None
        assert await on_demand.get() == 2  # the next request starts a fresh one
        await on_demand.close()
        assert readers.stopped == [1, 2]

    asyncio.run(scenario())


def test_a_failed_start_is_raised_to_the_request_and_the_next_one_tries_again() -> None:
    async def scenario() -> None:
        attempts = 0

        async def start() -> str:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("topic unavailable")
            return "reader"

        on_demand = OnDemand("test", start, lambda _: None, idle=30, clock=Clock())
        with pytest.raises(RuntimeError, match="topic unavailable"):
            await on_demand.get()
        assert on_demand.current is None
        assert await on_demand.get() == "reader"
        await on_demand.close()

    asyncio.run(scenario())


def test_idle_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle"):
        OnDemand("test", Readers().start, Readers().stop, idle=0)
