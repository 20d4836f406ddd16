"""Producing what a task leaves behind, and what to do when Kafka refuses part of it.

A task is done (its offset may be committed) once Kafka acknowledged every record it produced
(:class:`~delivery.offsets.Outputs`). A record refused as too large (a retry record that grew by
its retry headers past a tier topic's ``max.message.bytes``, say) is the task's own fault, not
the worker's: the task is dead-lettered with the reason and its original coordinates, and the
partition moves on. Any other refusal stops the worker, which redoes the task after a restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from delivery.lanes import Job
from delivery.metrics import delivery_metrics
from delivery.offsets import Outputs, PartitionProgress
from delivery.planner import DeliveryPlanner
from delivery.retry_headers import parse_retry_state
from plumbing.kafka.produce import Record, produce

log = logging.getLogger(__name__)

# What a broker (or the client, before sending) answers for a record over a size limit.
_TOO_LARGE = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE}
)


def _size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, Any]]) -> int:
    """A record's bytes: key, value and headers (names and values)."""
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name) + len(value or b"") for name, value in headers)
    )


class Settler:
    """Produces each task's records through ``producer``; ``done(progress, offset)`` once all
    are acknowledged. ``fail`` hears of a refusal the worker cannot get past."""

    def __init__(
        self,
        producer: Producer,
        planner: DeliveryPlanner,
        done: Callable[[PartitionProgress, int], None],
        fail: Callable[[BaseException], None],
        clock: Callable[[], float],
    ) -> None:
        self._producer = producer
        self._planner = planner
        self._done = done
        self._fail = fail
        self._clock = clock
        self._dead_letter_topic = planner.dead_letter_topic
        self._retry_topics = frozenset(planner.retry_topics)
        self._dead_letters = delivery_metrics().dead_letters

    def settle(self, job: Job, records: list[Record]) -> None:
        """Produce the task's records; its offset is done once Kafka acknowledged them all.

        Raises KafkaException if the producer refused one at once for another reason than its
        size (the task then stays unfinished)."""
        done = functools.partial(self._done, job.progress, job.offset)
        tracker = Outputs(done, self._refused, job)
        tracker.records = records
        producer, dead_letter_topic = self._producer, self._dead_letter_topic
        try:
            for record in records:
                tracker.add()
                try:
                    produce(producer, record, tracker)
                    if record.topic == dead_letter_topic:
                        self._dead_letters.inc()
                except KafkaException as exc:
                    error = exc.args[0]
                    headers = record.headers or ()
                    size = _size(record.key, record.value, headers)
                    if not self._replace(tracker, error, record.topic, size, headers):
                        raise
                    tracker.acked()  # the refused one is settled by its replacement
                    break  # the rest would contradict it (an attempt record "retrying")
        except BaseException:
            tracker.fail()  # the task stays unfinished, so its offset is never committed
            raise
        tracker.seal()

    def _refused(self, tracker: Outputs, error: KafkaError, record: Any) -> bool:
        """A delivery report refused one of ``tracker``'s records: replace the task's outputs
        (on the event loop, not inside the producer's callback) or stop the worker."""
        if error.code() in _TOO_LARGE and tracker.owner.task is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # the final flush, on another thread: redone after a restart
                loop = None
            if loop is not None:
                loop.call_soon(self._replace_later, tracker, error, record)
                return True
        topic = record.topic()
        log.error("delivery worker stopping: %s refused a record: %s", topic, error.str())
        self._fail(KafkaException(f"{topic}: {error.str()}"))
        return False

    def _replace_later(self, tracker: Outputs, error: KafkaError, record: Any) -> None:
        topic = record.topic() or ""
        # The record as produced: the report's message carries no headers (the retry state).
        original = next((r for r in tracker.records if r.topic == topic), None)
        if original is None:
            original = Record(topic, record.key(), record.value(), record.headers() or ())
        headers = original.headers or ()
        size = _size(original.key, original.value, headers)
        if not tracker.resent and topic in self._retry_topics:
            # The broker refuses a whole batch for one oversized record in it: this one may
            # only have shared its batch. Produced again it meets other neighbours; refused
            # again, it is the record itself.
            tracker.resent = True
            try:
                tracker.add()
                produce(self._producer, original, tracker)
            except Exception as exc:
                tracker.fail()
                self._fail(exc)
                return
            tracker.acked()
            return
        try:
            if not self._replace(tracker, error, topic, size, headers):
                raise KafkaException(f"{record.topic()}: {error.str()}")
        except Exception as exc:
            tracker.fail()
            self._fail(exc)
            return
        tracker.acked()

    def _replace(
        self,
        tracker: Outputs,
        error: KafkaError,
        topic: str,
        size: int,
        headers: Sequence[tuple[str, Any]],
    ) -> bool:
        """Dead-letter the task whose record (``size`` bytes, for ``topic``) Kafka refused as
        too large, once per task; False if that cannot help (another error, no task to park,
        or the dead letter itself was refused)."""
        job: Job = tracker.owner
        task = job.task
        # Only the retry record is the task's own growth (its retry headers); any other
        # record refused as too large (the attempt log, a disable) is a misconfigured topic:
        # parking the task would leave it both on the ladder and in the dead letters.
        if error.code() not in _TOO_LARGE or task is None or topic not in self._retry_topics:
            return False
        if tracker.replaced:
            return True  # another of its records was refused too: one dead letter is enough
        tracker.replaced = True
        # The retry record counts the attempt just made (the task's own state does not yet).
        attempts = parse_retry_state(headers).attempts
        reason = f"output too large: {topic} refused a record of {size} bytes ({error.str()})"
        log.error(
            "dead-lettering task %s (%s[%s]@%s): %s",
            task.id,
            job.message.topic(),
            job.message.partition(),
            job.offset,
            reason,
        )
        now = self._clock()
        for record in self._planner.output_refused(job.message, task, attempts, topic, reason, now):
            tracker.add()
            produce(self._producer, record, tracker)
            if record.topic == self._dead_letter_topic:
                self._dead_letters.inc()
        return True
