"""The registry's state in Kafka: a compacted, single-partition topic replayed into a
:class:`RegistryState` by a :class:`CompactedTopicView`, and written by one elected instance.

Writes are transactions of a producer whose ``transactional.id`` is the same on every instance:
when an instance is elected it initialises that producer, which fences any previous writer (a
zombie's commit fails) and settles its open transaction; it then writes a WRITER record and waits
until its view has read it back, so it plans ids from a complete state. Every write returns only
after its records are read back into the view (read-your-writes).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaException, Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.produce import Record as KafkaRecord
from plumbing.kafka.produce import produce_to_partition
from plumbing.kafka.topic_admin import ensure_topics
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from registry import errors, records
from registry.election import WriterElection
from registry.records import Record, Write, WriterRecord
from registry.state import RegistryState, WritePlan
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
PARTITION = 0
WRITER_HEADER = "cpevents-registry-instance"


class NotWriterError(Exception):
    """This instance does not hold the writer role (forward the write to the one that does)."""


class KafkaStore:
    """State of the registry topic plus, while elected, the right to write it."""

    def __init__(
        self,
        settings: Settings,
        advertised_url: str,
        topic: str | None = None,
        instance_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.topic = topic or settings.registry_topic
        self.instance_id = instance_id or uuid.uuid4().hex
        self.advertised_url = advertised_url
        self._settings = settings
        self._timeout = timeout
        self._state = RegistryState()
        self._lock = threading.Lock()  # guards _state (view thread writes, handlers read)
        self._write_lock = threading.Lock()  # one write (plan, produce, read back) at a time
        self._producer: Producer | None = None
        self._writer = threading.Event()
        self.bad_records = 0
        self._view: CompactedTopicView[Record] = CompactedTopicView(
            settings,
            self.topic,
            self._decode,
            on_error=self._on_bad_record,
            # A batch read waits the whole interval when the topic is quiet, and every write
            # waits for its read-back: keep it short (an idle poll costs next to nothing).
            poll_interval=0.01,
        )
        self._view.add_listener(self._on_change)
        self._election = WriterElection(
            settings,
            self.topic,
            group_id=f"{self.topic}.writer",
            on_elected=self._take_writer_role,
            on_deposed=self._drop_writer_role,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> KafkaStore:
        """Create the topic if missing, replay it, and join the writer election; returns once
        this instance knows whether it writes (or after ``timeout``)."""
        ensure_topics(
            self._settings,
            [
                TopicSpec(
                    name=self.topic,
                    role="registry",
                    partitions=1,
                    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
                )
            ],
        )
        self._view.start()
        self._view.wait_until_caught_up(self._timeout)
        self._election.start()
        if not self._election.joined.wait(self._timeout):
            log.warning("registry: no writer election result after %.0fs", self._timeout)
        elif self._election.assigned:
            # Joined with the partition: the writer role follows once fencing is done.
            self._writer.wait(self._timeout)
        return self

    def stop(self) -> None:
        self._election.stop()
        self._view.stop()

    # -- reading --------------------------------------------------------------------------------

    def read(self, query: Callable[[RegistryState], T]) -> T:
        """``query(state)`` under the state lock (raise RegistryError for 4xx answers)."""
        with self._lock:
            return query(self._state)

    @property
    def is_writer(self) -> bool:
        return self._writer.is_set()

    def writer(self) -> WriterRecord | None:
        """The latest announced writer (possibly this instance; possibly stale if it died)."""
        with self._lock:
            return self._state.writer

    def wait_for(self, offset: int) -> None:
        """Block until this instance has read the topic up to ``offset`` (a forwarded write)."""
        self._view.wait_for(PARTITION, offset, timeout=self._timeout)

    # -- writing --------------------------------------------------------------------------------

    def write(self, plan: Callable[[RegistryState], WritePlan]) -> tuple[Any, int | None]:
        """Plan against the current state, produce the records in one transaction and wait until
        they are read back. Returns (the plan's response, the offset a reader must have applied
        to see the result, None if the topic is empty). NotWriterError if not the writer."""
        with self._write_lock:
            producer = self._producer
            if producer is None or not self._writer.is_set():
                raise NotWriterError()
            with self._lock:
                decided = plan(self._state)
            if not decided.writes:
                # Nothing new, but the answer reflects everything read so far: a forwarding
                # instance waits for this position before it answers (read-your-writes).
                applied = self._view.position(PARTITION)
                return decided.response, applied - 1 if applied > 0 else None
            offset = self._produce(producer, decided.writes)
            try:
                self._view.wait_for(PARTITION, offset, timeout=self._timeout)
            except TimeoutError:
                raise errors.operation_timeout(
                    f"the write at offset {offset} was not read back in {self._timeout:.0f}s"
                ) from None
            return decided.response, offset

    def _produce(self, producer: Producer, writes: list[Write]) -> int:
        offsets: list[int] = []
        failures: list[str] = []

        def delivered(err: object, msg: Message) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                offsets.append(msg.offset() or 0)

        headers = [(WRITER_HEADER, self.instance_id.encode())]
        try:
            producer.begin_transaction()
            for write in writes:
                record = KafkaRecord(self.topic, write.key.encode(), write.value_bytes(), headers)
                # Pinned to PARTITION: the offsets waited for below are that partition's.
                produce_to_partition(producer, record, PARTITION, delivered)
            producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                try:
                    producer.abort_transaction(self._timeout)
                except KafkaException:
                    log.exception("registry: aborting a failed transaction failed")
            if error.fatal():
                # Fenced by a newer writer (or otherwise unusable): give the role up.
                log.warning("registry: writer producer failed fatally, resigning: %s", error)
                self._election.resign()
            raise errors.store_error(f"writing {self.topic} failed: {error.str()}") from None
        if failures or len(offsets) != len(writes):
            raise errors.store_error(f"writing {self.topic} failed: {failures}")
        return max(offsets)

    # -- the writer role (called on the election thread) ----------------------------------------

    def _take_writer_role(self) -> None:
        producer = Producer(
            producer_config(
                self._settings,
                **{
                    # Same id on every instance: initialising it fences the previous writer.
                    "transactional.id": f"cpevents-registry.{self.topic}",
                    "linger.ms": 0,
                },
            )
        )
        producer.init_transactions(self._timeout)
        announce = Write.put(WriterRecord(self.advertised_url, self.instance_id))
        offset = self._produce(producer, [announce])
        # Everything before our announcement is now in the view: ids planned from here on
        # cannot collide with an earlier writer's.
        self._view.wait_for(PARTITION, offset, timeout=self._timeout)
        with self._write_lock:
            self._producer = producer
            self._writer.set()
        log.info("registry: instance %s is the writer of %s", self.instance_id, self.topic)

    def _drop_writer_role(self) -> None:
        # No _write_lock here: a write that gets fenced resigns while holding it.
        self._writer.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(1)
        log.info("registry: instance %s no longer writes %s", self.instance_id, self.topic)

    # -- the view's callbacks (view thread) -----------------------------------------------------

    def _decode(self, message: Message) -> tuple[str, Record | None]:
        return records.decode(message.key(), message.value())

    def _on_change(self, _key: str, old: Record | None, new: Record | None) -> None:
        with self._lock:
            self._state.apply(old, new)

    def _on_bad_record(self, message: Message, exc: Exception) -> None:
        # Another writer's garbage must not stop the registry; it is skipped and counted.
        self.bad_records += 1
        log.warning(
            "registry: skipped record %s@%s of %s: %s",
            message.partition(),
            message.offset(),
            self.topic,
            exc,
        )
