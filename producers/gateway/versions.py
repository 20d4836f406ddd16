"""Concurrent writes of one webhook: per-key write locks, ETags and If-Match.

A webhook write is a read-modify-write of the whole record on a compacted topic: two rotations
that read the same version would each store a record the other never saw, and one of the
secrets they returned would be lost. Inside a gateway, writes of one webhook therefore queue
on a lock (FIFO: they land in the order they arrived, each reading the previous one's
result); across clients, ``If-Match`` with the ``ETag`` (the record's ``version``) refuses a
write based on a stale read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from producers.gateway.problems import Problem
from schemas.webhook import Webhook


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or awaits it
    (so the table never grows with the number of webhooks ever written)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block (waiting behind earlier holders, in order)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            remaining = self._users[key] - 1
            if remaining:
                self._users[key] = remaining
            else:
                del self._users[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def etag(webhook: Webhook) -> str:
    """The ``ETag`` of ``webhook``'s current version (a strong, quoted validator)."""
    return f'"{webhook.version}"'


def check_if_match(header: str | None, webhook: Webhook) -> None:
    """Refuse (409 naming ``If-Match``) a write whose ``If-Match`` does not name the current
    version; no header means an unconditional write. ``*`` matches any existing webhook, and
    a weak validator (``W/"3"``) counts as its strong form."""
    if header is None:
        return
    current = etag(webhook)
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == current:
            return
    raise Problem(
        409,
        "version-mismatch",
        f"webhook {webhook.id} is at version {webhook.version} (ETag {current}), not the one "
        "given: read it again and retry",
        "If-Match",
        headers={"ETag": current},
    )
