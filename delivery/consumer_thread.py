"""A Kafka consumer driven from asyncio, every call of it on one thread of its own.

confluent-kafka's consumer calls block, and its rebalance callbacks run inside the call that
polls: with every call on one executor thread they never block the event loop, and they
happen in the order they were made (the executor is FIFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConsumerThread:
    """``consumer`` and the one thread that makes its calls."""

    def __init__(self, consumer: Consumer, thread_name: str) -> None:
        self.consumer = consumer
        # Threads start on the first call, not here.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=thread_name)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a consumer call on the consumer's thread and wait for its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def call_later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a consumer call; it runs before the next one made with :meth:`call`."""

        def call() -> None:
            try:
                fn(*args)
            except KafkaException as exc:  # e.g. the partition was revoked meanwhile
                log.debug("consumer call %s failed: %s", getattr(fn, "__name__", fn), exc)

        self._executor.submit(call)

    async def close(self) -> None:
        """Close the consumer (leaving its group) and stop the thread."""
        with contextlib.suppress(Exception):
            await self.call(self.consumer.close)
        self._executor.shutdown(wait=True)
