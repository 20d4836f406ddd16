"""``Idempotency-Key`` on ``POST /v1/events``: a repeat gets the first answer, publishes nothing.

State lives in Kafka, on the compacted ``idempotency`` topic keyed by (tenant, key), so it holds
across gateway instances and restarts: every gateway reads the topic as a view.

The claim protocol, for concurrent duplicates on several gateways:

1. A gateway that finds no live entry for the key writes a ``claimed`` record (a fresh claim
   id, the body's fingerprint, the time) and waits until its own view has read up to that
   record's offset.
2. Every view applies records in partition order with the same rule: **the first live claim
   wins**; a later claim of the same key is ignored while the first is live. So all gateways
   agree on the winner, whoever wrote first.
3. The winner publishes the events, then writes ``done`` with the answer (status and body);
   the losers wait for that record and return its answer. A publish that failed writes
   ``released``, freeing the key for a retry.

A claim without ``done`` (its gateway died) stops being live after
``CPEVENTS_IDEMPOTENCY_CLAIM_TIMEOUT``; an answer after ``CPEVENTS_IDEMPOTENCY_TTL``. Whether a
record is live is judged on record times (the new claim's against the entry's), never on each
reader's clock, so every view decides the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import Message

from plumbing.kafka.async_producer import AsyncProducer
from plumbing.kafka.produce import Delivered, PublishError
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.kafka.view import CompactedTopicView, ViewError
from plumbing.settings import Settings
from producers.gateway.problems import Problem, unprocessable

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
_SWEEP_EVERY = 4096  # records applied between two sweeps of expired keys
MAX_KEY_LENGTH = 255
State = Literal["claimed", "done", "released"]


def check_key(value: str) -> str:
    """The key if it is 1..255 printable ASCII characters, else 422 naming the header."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(" " < ch <= "~" for ch in value):
        raise unprocessable(HEADER, f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return value


def fingerprint(data: Any) -> str:
    """What identifies a request body: the SHA-256 of its canonical JSON."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def record_key(scope: str, key: str) -> bytes:
    """The Kafka key: a JSON array, so no tenant id or key can collide with another pair."""
    return json.dumps([scope, key], separators=(",", ":")).encode()


@dataclass(frozen=True)
class Entry:
    """One record of the idempotency topic."""

    state: State
    claim: str  # the claim id: which request the record belongs to
    fingerprint: str
    at_ms: int  # when the claim was made (kept on its done record)
    status: int = 0
    body: Any = None

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """The entry in ``data``; ValueError if it is not one (the view skips it)."""
        try:
            fields = json.loads(data)
            entry = cls(**fields)
        except (TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not an idempotency record: {exc}") from None
        if entry.state not in ("claimed", "done", "released"):
            raise ValueError(f"unknown state {entry.state!r}")
        return entry


class Table:
    """First-live-claim-wins state per key. Pure: the view feeds it records in topic order."""

    def __init__(self, ttl_ms: int, claim_timeout_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.claim_timeout_ms = claim_timeout_ms
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()  # written by the view's thread, read by the event loop
        self._applied = 0

    def live(self, entry: Entry, now_ms: int) -> bool:
        """Whether ``entry`` still binds its key at ``now_ms``."""
        lifetime = self.ttl_ms if entry.state == "done" else self.claim_timeout_ms
        return entry.state != "released" and now_ms - entry.at_ms < lifetime

    def apply(self, key: str, entry: Entry | None) -> None:
        """Apply one record (None: a tombstone) of the topic, in topic order."""
        with self._lock:
            current = self._entries.get(key)
            if entry is None:
                self._entries.pop(key, None)
            elif entry.state == "claimed":
                # A later claim never displaces a live one: the first claim in the partition wins.
                if current is None or not self.live(current, entry.at_ms):
                    self._entries[key] = entry
            elif current is not None and current.claim == entry.claim:
                # done or released: only the winning claim's own outcome counts.
                if entry.state == "done":
                    self._entries[key] = entry
                else:
                    del self._entries[key]
            self._applied += 1
            if entry is not None and self._applied % _SWEEP_EVERY == 0:
                self._sweep(entry.at_ms)

    def _sweep(self, now_ms: int) -> None:
        """Forget entries older than the TTL at ``now_ms`` (a record's time): nothing could
        make them live again, so every view forgetting them at its own moment agrees."""
        old = [k for k, e in self._entries.items() if now_ms - e.at_ms >= self.ttl_ms]
        for key in old:
            del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str, now_ms: int) -> Entry | None:
        """The live entry of ``key`` at ``now_ms``, or None."""
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and self.live(entry, now_ms) else None


@dataclass(frozen=True)
class Answer:
    """A response to give (again): status and JSON body."""

    status: int
    body: Any


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IdempotencyStore:
    """The gateway's side of the protocol: a view of the topic and the claim/done writes."""

    def __init__(self, settings: Settings, producer: AsyncProducer) -> None:
        # Named from the prefix like every topic of the catalog (topics.json "idempotency").
        self.topic = f"{settings.topics.prefix}idempotency"
        self._settings = settings
        self._producer = producer
        self._claim_timeout = settings.idempotency_claim_timeout
        self.table = Table(
            int(settings.idempotency_ttl * 1000), int(settings.idempotency_claim_timeout * 1000)
        )
        self.view: CompactedTopicView[Entry] = CompactedTopicView(
            settings, self.topic, self._decode, poll_interval=0.02
        )
        self.view.add_listener(lambda key, _old, new: self.table.apply(key, new))

    @staticmethod
    def _decode(message: Message) -> tuple[str, Entry | None]:
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        return key, None if value is None else Entry.decode(value)

    async def start(self) -> None:
        """Create the topic if it is missing (a deployment older than the feature), then read
        it to the end: the keys of every earlier answer hold from the first request on."""
        await asyncio.to_thread(self._ensure_topic)
        self.view.start()
        await asyncio.to_thread(self.view.wait_until_caught_up, 60.0)

    def _ensure_topic(self) -> None:
        settings = self._settings
        specs = [s for s in settings.topics.specs(settings.partitions) if s.name == self.topic]
        try:
            ensure_topics(settings, specs)
        except Exception as exc:
            # E.g. no CreateTopics right: the view's start names the topic if it is missing.
            log.warning("could not ensure topic %s: %s", self.topic, exc)

    def stop(self) -> None:
        self.view.stop()

    async def run_once(
        self,
        scope: str,
        key: str,
        body_fingerprint: str,
        publish: Callable[[], Awaitable[Answer]],
    ) -> Answer:
        """``publish()``'s answer, run at most once per (scope, key) across every gateway;
        a repeat gets the first answer, a different body 422 naming the header."""
        name = record_key(scope, key).decode()
        existing = self.table.get(name, _now_ms())
        if existing is None:
            claim = Entry("claimed", uuid.uuid4().hex, body_fingerprint, _now_ms())
            try:
                await self._write_and_read(name, claim)
            except (PublishError, ViewError, TimeoutError) as exc:
                raise Problem(503, "idempotency-unavailable", str(exc)) from None
            existing = self.table.get(name, _now_ms())
            if existing is not None and existing.claim == claim.claim:
                return await self._won(name, claim, publish)
        if existing is None:
            # Our claim expired before we read it (a stalled view): refuse rather than guess.
            raise Problem(503, "idempotency-unavailable", "the key's claim could not be read")
        if existing.fingerprint != body_fingerprint:
            raise unprocessable(HEADER, "was used with a different request body")
        return await self._answer_of(name, existing.claim)

    async def _won(
        self, name: str, claim: Entry, publish: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        try:
            answer = await publish()
        except BaseException:
            # Nothing (or not everything) was published: free the key for a retry.
            released = Entry("released", claim.claim, claim.fingerprint, claim.at_ms)
            await self._write(name, released)
            raise
        done = Entry(
            "done", claim.claim, claim.fingerprint, claim.at_ms, answer.status, answer.body
        )
        await self._write(name, done)
        return answer

    async def _answer_of(self, name: str, claim: str) -> Answer:
        """The answer of ``claim`` once its done record arrives (a duplicate in flight)."""
        deadline = time.monotonic() + self._claim_timeout
        while True:
            entry = self.table.get(name, _now_ms())
            if entry is not None and entry.claim == claim and entry.state == "done":
                return Answer(entry.status, entry.body)
            if entry is None or entry.claim != claim or time.monotonic() > deadline:
                raise Problem(
                    409,
                    "idempotency-key-in-flight",
                    "the first request with this key did not finish; retry later",
                    HEADER,
                )
            await asyncio.sleep(0.02)

    async def _write(self, name: str, entry: Entry) -> Delivered:
        return await self._producer.send(self.topic, name.encode(), entry.encode())

    async def _write_and_read(self, name: str, entry: Entry) -> None:
        # Read our own claim back: by then the view applied every earlier claim of the key.
        stored = await self._write(name, entry)
        await asyncio.to_thread(self.view.wait_for, stored.partition, stored.offset, 30.0)
