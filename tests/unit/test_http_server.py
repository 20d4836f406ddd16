"""plumbing.http_server on loopback sockets: header timeout, connection cap, normal serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from plumbing.http_server import LimitedSite, ServerLimits, start_server


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def site() -> AsyncIterator[LimitedSite]:
    app = web.Application()
    app.router.add_get("/", hello)
    limits = ServerLimits(header_timeout=0.5, keepalive_timeout=5, max_connections=3)
    runner, running = await start_server(app, "127.0.0.1", 0, limits)
    try:
        yield running
    finally:
        await runner.cleanup()


async def get(site: LimitedSite) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{site.port}/") as response,
    ):
        return response.status


async def read_all(reader: asyncio.StreamReader) -> bytes:
    data = b""
    async with asyncio.timeout(5):
        while chunk := await reader.read(1024):
            data += chunk
    return data


async def test_an_incomplete_request_head_is_answered_408_and_closed(site: LimitedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the empty line
    answer = await read_all(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.4 < time.monotonic() - started < 3
    assert await get(site) == 200
    assert site.open_connections == 0


async def test_a_complete_head_split_across_reads_is_served(site: LimitedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    # The empty line ending the head arrives in pieces, the last one after the timeout's
    # start: the guard must still see the head complete.
    for part in (b"GET / HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.1)
    answer = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
    assert answer.startswith(b"HTTP/1.1 200")
    # Past the header timeout: had the guard missed the head, it would have closed the
    # connection by now; a kept-alive one serves the next request.
    await asyncio.sleep(0.8)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    again = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
    writer.close()
    assert again.startswith(b"HTTP/1.1 200")


async def test_connections_past_the_cap_are_refused_with_503_until_one_closes(
    site: LimitedSite,
) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert site.open_connections == 3
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    answer = await read_all(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503")
    assert site.refused_connections == 1
    _, first = idle.pop()
    first.close()
    await asyncio.sleep(0.05)
    assert await get(site) == 200
    for _, other in idle:
        other.close()


async def test_blank_lines_before_the_request_line_do_not_disarm_the_timeout(
    site: LimitedSite,
) -> None:
    # aiohttp skips blank lines before a request line; they must not pass for the empty line
    # that ends a head, or a client could then drip its head in forever.
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    started = time.monotonic()
    writer.write(b"\r\n\r\n")
    for part in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 1\r\n"):
        await asyncio.sleep(0.2)
        if writer.is_closing():
            break
        writer.write(part)
    answer = await read_all(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    assert time.monotonic() - started < 3


async def test_a_burst_of_connections_is_counted_as_it_is_accepted(site: LimitedSite) -> None:
    # Accepted together, the connections' protocols are all made before any of them starts:
    # the cap must count them from the accept, not from connection_made.
    burst = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", site.port) for _ in range(8))
    )
    await asyncio.sleep(0.1)
    assert site.open_connections <= 3
    assert site.refused_connections == 5
    for _, writer in burst:
        writer.close()
    await asyncio.sleep(0.1)
    assert site.open_connections == 0
