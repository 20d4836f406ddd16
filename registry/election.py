"""Which registry instance writes: the member of a Kafka consumer group that is assigned the
registry topic's single partition. Kafka's group coordinator does the electing (one owner per
partition, a dead member's partition moves after its session times out); this module only
turns assignments into ``on_elected`` / ``on_deposed`` calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from plumbing.kafka.clients import consumer_config
from plumbing.settings import Settings

log = logging.getLogger(__name__)


class WriterElection:
    """Membership of ``group_id`` on ``topic``, polled in a background thread.

    ``on_elected`` runs on that thread when this member gets the partition (it may block, e.g.
    to fence the previous writer; if it raises, it is retried on the next poll); ``on_deposed``
    runs when the partition is revoked or lost.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        session_timeout_ms: int = 6000,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._group_id = group_id
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._session_timeout_ms = session_timeout_ms
        self._owned: set[int] = set()
        self._elected = False
        # Reentrant: on_elected may resign (fenced at once), which deposes under the same lock.
        self._transition = threading.RLock()
        self._stop = threading.Event()
        self.joined = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def elected(self) -> bool:
        return self._elected

    @property
    def assigned(self) -> bool:
        """The group currently gives this member the partition."""
        return bool(self._owned)

    def start(self) -> None:
        consumer = Consumer(
            consumer_config(
                self._settings,
                self._group_id,
                **{
                    # Membership is all we want: start at the end, so polling fetches little.
                    "auto.offset.reset": "latest",
                    "session.timeout.ms": self._session_timeout_ms,
                    "heartbeat.interval.ms": max(self._session_timeout_ms // 6, 100),
                    # A member joining must not take the role away from the writer for a
                    # rebalance: cooperative assignment keeps the partition where it is.
                    "partition.assignment.strategy": "cooperative-sticky",
                },
            )
        )
        consumer.subscribe(
            [self._topic],
            on_assign=self._assigned_cb,
            on_revoke=self._revoked_cb,
            on_lost=self._revoked_cb,
        )
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name=f"election:{self._topic}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Leave the group (so another member takes over at once) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    # Callbacks get the partitions added or removed (incremental with cooperative assignment).
    def _assigned_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._owned.update(p.partition for p in partitions)
        self.joined.set()

    def _revoked_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._owned.difference_update(p.partition for p in partitions)
        if not self._owned:
            self._depose()

    def _depose(self) -> None:
        with self._transition:
            if self._elected:
                self._elected = False
                self._on_deposed()

    def _elect(self) -> None:
        with self._transition:
            if self._elected or not self._owned:
                return
            try:
                self._on_elected()
            except Exception:
                log.exception("registry: taking the writer role failed; retrying")
            else:
                self._elected = True

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                consumer.poll(0.1)  # serves the group protocol; records are ignored
                if self._owned and not self._elected:
                    self._elect()
        finally:
            self._depose()
            consumer.close()  # leaves the group: the partition moves to another member now

    def resign(self) -> None:
        """Give up the writer role without leaving the group (e.g. after being fenced): the
        next poll takes it again only if the group still assigns us the partition.

        A transition already under way on the election thread supersedes it: taking the role
        anew (whose producer is what fenced ours: a session timeout and rejoin while a broker
        was down) or losing it. Waiting for that transition here would deadlock: the fenced
        write holds the store's write lock, which taking the role waits for."""
        if not self._transition.acquire(blocking=False):
            log.info("registry: resigning skipped, a writer-role change is under way")
            return
        try:
            self._depose()
        finally:
            self._transition.release()
