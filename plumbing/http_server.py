"""Serving an aiohttp application with limits against slow and greedy clients.

aiohttp alone lets a client hold a connection for an hour by sending a request head one byte
at a time (its keep-alive timer defaults to 3630 s), and accepts any number of connections.
:func:`start_server` serves an application with

- a **header timeout**: a new connection must deliver its first complete request head
  within ``header_timeout`` seconds, or it is answered 408 and closed;
- a **keep-alive timeout**: aiohttp's own; an idle connection, or one whose *next* request
  head is still incomplete, is closed ``keepalive_timeout`` seconds after its last response;
- a **connection cap**: past ``max_connections`` open connections a new one is answered 503
  and closed at once, so slow clients cannot exhaust file descriptors or memory;
- aiohttp's line, header-field and header-count limits (``max_line_size``,
  ``max_field_size``, ``max_headers``).

Slow *bodies* are the application's to bound (read them under a timeout: the gateway's
``CPEVENTS_GATEWAY_BODY_TIMEOUT``). Used by the gateway and the registry.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

__all__ = ["LimitedSite", "ServerLimits", "start_server"]

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits of a served application (seconds, counts and bytes)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    max_connections: int = 1024
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 128

    def __post_init__(self) -> None:
        if self.header_timeout <= 0 or self.keepalive_timeout <= 0:
            raise ValueError("header_timeout/keepalive_timeout: must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections: must be >= 1")

    def runner_options(self) -> dict[str, Any]:
        """The options aiohttp's request handler takes (``AppRunner(app, **options)``)."""
        return {
            "keepalive_timeout": self.keepalive_timeout,
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "max_headers": self.max_headers,
        }


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it against the cap and closes it if
    its first request head does not arrive in time. Once the head arrived, it only forwards."""

    __slots__ = ("_counted", "_inner", "_site", "_started", "_tail", "_timer", "_transport")

    def __init__(self, site: LimitedSite, inner: asyncio.Protocol | None) -> None:
        self._site = site
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        # Counted from the moment it is accepted (the factory runs for every accepted socket
        # before any connection_made, so counting there would let a burst pass the cap).
        self._counted = inner is not None
        if self._counted:
            site.open_connections += 1
        # Whether the request line has begun: blank lines before it (which aiohttp skips) must
        # not pass for the empty line that ends a head.
        self._started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        site = self._site
        if self._inner is None:  # over the cap: refused before aiohttp sees it
            transport.write(_BUSY)
            transport.close()
            return
        self._timer = asyncio.get_running_loop().call_later(
            site.limits.header_timeout, self._expire
        )
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._watch_head(data)
        if self._inner is not None:
            self._inner.data_received(data)

    def _watch_head(self, data: bytes) -> None:
        """Cancel the header timer once the first request head is complete."""
        assert self._timer is not None
        if not self._started:
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self._started = True
        # The head ends at an empty line; keep 3 bytes so one split across reads is seen.
        window = self._tail + data
        if b"\n\r\n" in window or b"\n\n" in window:
            self._timer.cancel()
            self._timer = None
        else:
            self._tail = window[-3:]

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._site.open_connections -= 1
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        log.info("closing %s: no complete request head within the header timeout", peer)
        transport.write(_TIMEOUT)
        transport.close()


class LimitedSite(web.BaseSite):
    """A TCP site whose connections are guarded by :class:`ServerLimits`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ServerLimits,
        backlog: int = 128,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.host = host
        self.port = port
        self.limits = limits
        # A socket bound beforehand (the registry binds first: its address is part of what
        # it announces before serving); else host and port are bound on start.
        self._sock = sock
        self.open_connections = 0
        self.refused_connections = 0

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; each accepted connection goes through a guard to the runner's server."""
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite checked the runner was set up
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                self._guarded(server), sock=self._sock, backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                self._guarded(server),
                self.host,
                self.port,
                backlog=self._backlog,
                reuse_address=True,
            )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # the real one when 0 was asked

    def _guarded(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], _Guard]:
        def make() -> _Guard:
            if self.open_connections >= self.limits.max_connections:
                self.refused_connections += 1
                if self.refused_connections % 100 == 1:  # a flood must not flood the log too
                    log.warning(
                        "%s: %d connections open, the limit; refusing new ones (503)",
                        self.name,
                        self.open_connections,
                    )
                return _Guard(self, None)
            return _Guard(self, factory())

        return make


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    sock: socket.socket | None = None,
) -> tuple[web.AppRunner, LimitedSite]:
    """Set ``app`` up and listen on ``host:port`` (or on ``sock``, already bound) with
    ``limits``; returns the runner (call ``cleanup()`` to stop) and the site (its ``port`` is
    the bound one)."""
    runner = web.AppRunner(app, access_log=None, **limits.runner_options())
    await runner.setup()
    site = LimitedSite(runner, host, port, limits, sock=sock)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site
