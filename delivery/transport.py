"""The seam between the worker and HTTP: one signed POST in, one :class:`AttemptResult` out.

Modelled on httpx's transports (``_transports/base.py`` and ``mock.py``): the worker and its
lanes talk to an :class:`AsyncTransport`; :class:`delivery.sender.Sender` is the real one
(aiohttp, the SSRF guard, the total-time limit) and :class:`MockTransport` calls a function
instead of opening sockets, so lane behaviour is tested without endpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import NamedTuple, Self

from delivery.outcome import Outcome, Verdict


class AttemptResult(NamedTuple):
    """What one attempt got: the HTTP status (0 without a response), the verdict, its time."""

    status: int
    outcome: Outcome
    duration_ms: float


def no_response(verdict: Verdict, reason: str) -> AttemptResult:
    """The result of an attempt that was never sent (e.g. an open breaker, no secret)."""
    return AttemptResult(0, Outcome(verdict, reason), 0.0)


class AsyncTransport(ABC):
    """Posts a webhook body. Use as ``async with transport``; ``post`` never raises for the
    endpoint's behaviour (refusals, timeouts, errors), it reports it in the result."""

    @abstractmethod
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """POST ``body`` with ``headers`` to ``url``."""

    # Not abstract: a transport that holds nothing (e.g. MockTransport) has nothing to close.
    async def aclose(self) -> None:  # noqa: B027
        """Release what the transport holds (connections, timers)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


# What a MockTransport calls: the request's parts in, a result (or an awaitable of one) out.
Handler = Callable[[str, bytes, Mapping[str, str]], AttemptResult | Awaitable[AttemptResult]]


class MockTransport(AsyncTransport):
    """A transport that answers every post with ``handler(url, body, headers)``; an async
    handler may wait (to hold an endpoint open, say) before it answers."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        result = self.handler(url, body, headers)
        if not isinstance(result, AttemptResult):
            result = await result
        return result
