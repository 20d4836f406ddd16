"""What the portal shows beyond the gateway's views: each delivery's event (payload), every
attempt of it (a timeline, not only the latest state) and its dead-letter record (reason).

The gateway's delivery view keeps only the latest record per delivery; the portal tails the
same topics with views of its own (``plumbing.kafka.view``): the deliveries topic (the tasks,
which carry the event), the attempt log (a listener keeps each record as a timeline entry) and
the delivery dead-letter topic (the parked task and the headers saying why). Everything is kept
in memory, like the gateway's views: bounded by the retention of those topics.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import Message

from plumbing.kafka.deadletter import DeadLetter, header_map, message_headers, parse_dead_letter
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask, WebhookDelivery
from schemas.serde import DecodeError, Serde

log = logging.getLogger(__name__)

M = TypeVar("M")

# A delivery's timeline keeps its latest attempts only: a retry ladder has a handful of tiers.
MAX_ATTEMPTS_KEPT = 50


@dataclass(frozen=True)
class DeadTask:
    """A dead-lettered delivery task, with why and when, and the raw record to redrive."""

    task: DeliveryTask
    letter: DeadLetter
    failed_at: datetime | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class PortalFeed:
    """Three views, started together; reads are safe from the event loop."""

    def __init__(self, settings: Settings, serde: Serde) -> None:
        topics = settings.topics
        self._serde = serde
        self._lock = threading.Lock()
        self._timelines: dict[str, deque[WebhookDelivery]] = {}
        self.tasks: CompactedTopicView[DeliveryTask] = CompactedTopicView(
            settings, topics.deliveries, self._decode_task, on_error=_skip
        )
        self.attempts: CompactedTopicView[WebhookDelivery] = CompactedTopicView(
            settings, topics.webhook_deliveries, self._decode_attempt, on_error=_skip
        )
        self.attempts.add_listener(self._on_attempt)
        self.dead: CompactedTopicView[DeadTask] = CompactedTopicView(
            settings, topics.deliveries_dlt, self._decode_dead, on_error=_skip
        )
        self._views = (self.tasks, self.attempts, self.dead)

    async def start(self) -> None:
        """Start the views and return once each caught up with its topic."""
        for view in self._views:
            await asyncio.to_thread(view.start)
        await asyncio.gather(*(asyncio.to_thread(v.wait_until_caught_up) for v in self._views))

    def stop(self) -> None:
        for view in self._views:
            view.stop()

    def task(self, delivery_id: str) -> DeliveryTask | None:
        """The task (and so the event) of a delivery, if still on the deliveries topic."""
        return self.tasks.get(delivery_id)

    def timeline(self, delivery_id: str) -> list[WebhookDelivery]:
        """Every attempt record of a delivery seen by this process, oldest first."""
        with self._lock:
            return list(self._timelines.get(delivery_id, ()))

    def dead_letters(self) -> list[DeadTask]:
        """Every delivery in the dead-letter topic (its newest record), newest first."""
        found = list(self.dead.snapshot().values())
        return sorted(found, key=lambda d: d.failed_at or datetime.min.replace(tzinfo=UTC))[::-1]

    def _decode_task(self, message: Message) -> tuple[str, DeliveryTask | None]:
        task = self._decode(self._serde.tasks.decode, message)
        return task.id, task

    def _decode_attempt(self, message: Message) -> tuple[str, WebhookDelivery | None]:
        key = (message.key() or b"").decode(errors="replace")
        if message.value() is None:
            return key, None
        return key, self._decode(self._serde.deliveries.decode, message)

    def _decode_dead(self, message: Message) -> tuple[str, DeadTask | None]:
        task = self._decode(self._serde.tasks.decode, message)
        raw_headers = message_headers(message)
        failed_ms = header_map(raw_headers).get("dlt-failed-at", "")
        failed_at = (
            datetime.fromtimestamp(int(failed_ms) / 1000, UTC) if failed_ms.isdigit() else None
        )
        headers = tuple((name, value or b"") for name, value in raw_headers)
        letter = parse_dead_letter(raw_headers)
        return task.id, DeadTask(task, letter, failed_at, message.key(), message.value(), headers)

    @staticmethod
    def _decode(decode: Callable[[bytes | None, str], M], message: Message) -> M:
        try:
            return decode(message.value(), message.topic() or "")
        except DecodeError as exc:
            raise ValueError(exc.reason) from None  # the view skips it (on_error)

    def _on_attempt(
        self, key: str, old: WebhookDelivery | None, new: WebhookDelivery | None
    ) -> None:
        with self._lock:
            if new is None:
                self._timelines.pop(key, None)
                return
            timeline = self._timelines.setdefault(key, deque(maxlen=MAX_ATTEMPTS_KEPT))
            # The worker may write the same state twice (a retry of its own write): keep one.
            if not timeline or timeline[-1] != new:
                timeline.append(new)


def _skip(message: Message, error: Exception) -> None:
    log.warning(
        "portal: skipping undecodable record %s[%s]@%s: %s",
        message.topic(),
        message.partition(),
        message.offset(),
        error,
    )
