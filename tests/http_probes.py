"""Clients that misbehave on purpose, for tests of the HTTP servers' connection limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def slow_header_client(
    host: str,
    port: int,
    give_up_after: float,
    while_waiting: Callable[[], Awaitable[None]],
) -> tuple[float, bytes]:
    """Send a request head one header line at a time, never its end, until the server closes
    the connection or ``give_up_after`` seconds pass; ``while_waiting`` runs between lines
    (e.g. another client's request, which must be served meanwhile).

    Returns how long the connection stayed open (seconds) and what the server answered.
    """
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: probe\r\n")
    answer = b""
    try:
        while time.monotonic() - started < give_up_after:
            await while_waiting()
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(1024), 0.2)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk:
                break
    except ConnectionError:
        pass  # the server closed while we were writing: cut off as well
    finally:
        writer.close()
    return time.monotonic() - started, answer
