"""One HTTP attempt: a signed POST through a pooled aiohttp session with the SSRF guard."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Self

import aiohttp
from yarl import URL

from delivery.config import DeliveryConfig
from delivery.deadlines import Deadlines
from delivery.outcome import Outcome, Verdict, classify_error, classify_status
from delivery.ssrf import BlockedAddressError, GuardedResolver, check_url, parse_networks
from delivery.transport import AsyncTransport, AttemptResult

__all__ = ["USER_AGENT", "AttemptResult", "Sender", "endpoint_key"]

USER_AGENT = "cpevents-delivery/0.1 (Standard Webhooks)"
_ERROR_EXCERPT = 200
_VETTED_CACHE = 10_000
# How often the attempts in flight are checked against the total timeout (seconds; at most a
# tenth of the timeout).
_SWEEP_INTERVAL = 0.1


@functools.lru_cache(maxsize=4096)
def endpoint_key(url: str) -> str:
    """The endpoint a URL belongs to for limits and the breaker: scheme, host and port."""
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


@functools.lru_cache(maxsize=128)
def _delivered(status: int) -> Outcome:
    """The outcome of a 2xx status (immutable, so made once per status)."""
    return classify_status(status)


class Sender(AsyncTransport):
    """The real transport: posts bodies to endpoints through one pooled aiohttp session.

    Use as ``async with Sender(config) as sender``.
    """

    def __init__(self, config: DeliveryConfig) -> None:
        self._config = config
        self._allowed = parse_networks(config.allowed_networks)
        self._session: aiohttp.ClientSession | None = None
        self._deadlines = Deadlines(config.timeout)
        self._enforcer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the session runs on
        # url -> the parsed URL, or why the guard refuses it: a webhook's URL is checked once.
        self._vetted: dict[str, URL | BlockedAddressError] = {}

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._allowed),
            limit=self._config.concurrency,
            # The worker limits requests per endpoint itself, outside the attempt's timeout;
            # a pool limit here would make queued requests time out while waiting.
            limit_per_host=0,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The total limit is kept by ``_deadlines`` (one sweep for every attempt in flight,
            # not a timer per request); aiohttp keeps the connect limit.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._config.connect_timeout),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # one tenant's cookies must not reach another
            headers={
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                # Bodies are read raw (an error excerpt at most): ask for them uncompressed.
                "accept-encoding": "identity",
            },
        )
        interval = min(_SWEEP_INTERVAL, self._config.timeout / 10)
        self._enforcer = asyncio.create_task(self._deadlines.enforce(interval))
        return self

    async def aclose(self) -> None:
        """Stop the timeout sweep and close the session's connections."""
        if self._enforcer is not None:
            self._enforcer.cancel()
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """POST ``body``; never raises for the endpoint's behaviour, only reports it."""
        assert self._session is not None, "use Sender as an async context manager"
        started = time.perf_counter()
        # The loop passed: Python 3.11's current_task would look it up on every attempt.
        attempt = asyncio.current_task(self._loop)
        assert attempt is not None, "post runs in a task"
        self._deadlines.start(attempt)
        try:
            target = self._vet(url)
            async with self._session.post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                received = await self._read_capped(response)
                status = response.status
                if 200 <= status < 300:
                    outcome = _delivered(status)  # the common case: no header to look at
                else:
                    outcome = classify_status(
                        status,
                        response.headers.get("Retry-After"),
                        self._config.retry_after_cap,
                    )
                    excerpt = received[:_ERROR_EXCERPT].decode(errors="replace").strip()
                    if outcome.verdict is not Verdict.DELIVERED and excerpt:
                        outcome = Outcome(
                            outcome.verdict, f"{outcome.reason}: {excerpt}", outcome.retry_after
                        )
        except asyncio.CancelledError:
            if not self._deadlines.cut(attempt):
                raise
            outcome, status = self._timed_out(), 0
        except BlockedAddressError as exc:
            outcome = Outcome(Verdict.DEAD_LETTER, f"refused by the SSRF guard: {exc}")
            status = 0
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                outcome = self._timed_out()
            else:
                outcome = classify_error(exc)
            status = 0
        finally:
            self._deadlines.finish(attempt)
        return AttemptResult(status, outcome, (time.perf_counter() - started) * 1000)

    def _timed_out(self) -> Outcome:
        return Outcome(Verdict.RETRY, f"timeout after {self._config.timeout}s")

    def _vet(self, url: str) -> URL:
        """``url`` parsed, once it passed the SSRF guard's static check (names are vetted at
        resolution time); raises BlockedAddressError otherwise."""
        vetted = self._vetted.get(url)
        if vetted is None:
            try:
                check_url(url, self._allowed)
                vetted = URL(url)
            except BlockedAddressError as exc:
                vetted = exc
            if len(self._vetted) >= _VETTED_CACHE:
                self._vetted.clear()
            self._vetted[url] = vetted
        if isinstance(vetted, BlockedAddressError):
            raise BlockedAddressError(str(vetted))
        return vetted

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytearray:
        # Read at most the cap so a huge or endless body cannot hold memory or the slot.
        cap = self._config.max_response_bytes
        received = bytearray()
        content = response.content
        # Read to the end (within the cap): a body left unread closes the pooled connection.
        while len(received) < cap:
            chunk = await content.read(cap - len(received))
            if not chunk:
                break
            received.extend(chunk)
            if content.at_eof():
                break  # saves a read call on the usual one-chunk body
        return received
