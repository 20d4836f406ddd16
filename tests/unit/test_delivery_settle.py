"""Producing a task's records: done once all are acknowledged, and a record too large for its
topic dead-letters the task instead of stopping the worker (a fake producer, no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from delivery.lanes import Job
from delivery.offsets import PartitionProgress
from delivery.outcome import classify_status
from delivery.retry_headers import RetryState
from delivery.settle import Settler
from delivery.transport import AttemptResult
from plumbing.kafka.deadletter import parse_dead_letter
from schemas.delivery_records import DeliveryStatus
from tests.unit.test_delivery_planner import FIRST_TIER, NOW, TOPICS, Setup
from tests.unit.test_delivery_planner import setup as setup  # the fixture


class Producer:
    """Takes records; refuses those for ``too_large`` topics at once, as librdkafka does for a
    record over ``message.max.bytes``; ``acknowledge`` runs the delivery reports."""

    def __init__(self, too_large: frozenset[str] = frozenset()) -> None:
        self.too_large = too_large
        self.records: list[tuple[str, Any, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if topic in self.too_large:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.records.append((topic, kwargs, kwargs["on_delivery"]))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def acknowledge(self) -> None:
        for _, _, on_delivery in self.records:
            on_delivery(None, None)


def settler(setup: Setup, producer: Producer) -> tuple[Settler, list[int], list[BaseException]]:
    done: list[int] = []
    failures: list[BaseException] = []
    return (
        Settler(
            producer,  # type: ignore[arg-type]
            setup.planner(),
            lambda progress, offset: done.append(offset),
            failures.append,
            lambda: NOW,
        ),
        done,
        failures,
    )


def failed_attempt(setup: Setup) -> tuple[Job, list[Any]]:
    state = RetryState()
    job = Job(setup.message(), None, state, PartitionProgress(), 7, task=setup.task)
    result = AttemptResult(500, classify_status(500), 1.0)
    records = setup.planner().after_attempt(
        job.message, setup.task, result, None, state, setup.webhook, NOW
    )
    return job, records


def test_a_task_is_done_once_every_record_is_acknowledged(setup: Setup) -> None:
    producer = Producer()
    settle, done, failures = settler(setup, producer)
    job, records = failed_attempt(setup)
    settle.settle(job, records)
    assert [topic for topic, _, _ in producer.records] == [FIRST_TIER, TOPICS.webhook_deliveries]
    assert done == []
    producer.acknowledge()
    assert done == [7] and failures == []


def test_a_retry_record_refused_as_too_large_dead_letters_the_task(setup: Setup) -> None:
    producer = Producer(too_large=frozenset({FIRST_TIER}))
    settle, done, failures = settler(setup, producer)
    job, records = failed_attempt(setup)
    settle.settle(job, records)
    # The dead letter and an attempt record that says so, instead of "retrying".
    topics = [topic for topic, _, _ in producer.records]
    assert topics == [TOPICS.deliveries_dlt, TOPICS.webhook_deliveries]
    letter = producer.records[0][1]
    info = parse_dead_letter(letter["headers"])
    assert info.reason.startswith(f"output too large: {FIRST_TIER} refused a record of ")
    assert (info.original_topic, info.original_partition, info.original_offset) == (
        TOPICS.deliveries,
        2,
        7,
    )
    assert info.extra["attempts"] == "1"
    attempt = producer.records[1][1]
    delivery = setup.serde.deliveries.decode(attempt["value"], TOPICS.webhook_deliveries)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD_LETTERED, 1)
    producer.acknowledge()
    assert done == [7] and failures == []


def test_a_dead_letter_too_large_leaves_the_task_unfinished(setup: Setup) -> None:
    """Nothing can take a dead letter's place: the worker stops and redoes the task later."""
    producer = Producer(too_large=frozenset({TOPICS.deliveries_dlt}))
    settle, done, _ = settler(setup, producer)
    state = RetryState()
    job = Job(setup.message(), None, state, PartitionProgress(), 7, task=setup.task)
    result = AttemptResult(400, classify_status(400), 1.0)
    records = setup.planner().after_attempt(
        job.message, setup.task, result, None, state, setup.webhook, NOW
    )
    assert records[0].topic == TOPICS.deliveries_dlt
    with pytest.raises(KafkaException):
        settle.settle(job, records)
    producer.acknowledge()
    assert done == []


class Reported:
    """A produced record as a delivery report shows it (confluent ``Message`` accessors)."""

    def __init__(self, topic: str, kwargs: dict[str, Any]) -> None:
        self._topic, self._kwargs = topic, kwargs

    def topic(self) -> str:
        return self._topic

    def key(self) -> Any:
        return self._kwargs.get("key")

    def value(self) -> Any:
        return self._kwargs.get("value")

    def headers(self) -> Any:
        return None  # as in confluent-kafka's delivery reports: the headers are not kept


def report(producer: Producer, refuse: dict[str, int]) -> None:
    """Run the delivery reports of what was produced so far: the first ``refuse[topic]``
    records of a topic are refused as too large (the broker's answer for a whole batch)."""
    pending, producer.records = producer.records, []
    for topic, kwargs, on_delivery in pending:
        if refuse.get(topic, 0) > 0:
            refuse[topic] -= 1
            on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Reported(topic, kwargs))
        else:
            on_delivery(None, Reported(topic, kwargs))


async def test_a_retry_record_refused_once_is_produced_again_alone(setup: Setup) -> None:
    """A batch is refused whole for one oversized record in it: a record that only shared the
    batch goes through once produced again, and the task is not dead-lettered."""
    producer = Producer()
    settle, done, failures = settler(setup, producer)
    job, records = failed_attempt(setup)
    settle.settle(job, records)
    report(producer, {FIRST_TIER: 1})
    await asyncio.sleep(0)  # the replacement is decided on the loop, not in the callback
    assert [topic for topic, _, _ in producer.records] == [FIRST_TIER]
    # Produced again as it was: with its retry state (the report's message has no headers).
    assert producer.records[0][1]["headers"] == records[0].headers
    report(producer, {})
    assert done == [7] and failures == []


async def test_a_retry_record_refused_twice_dead_letters_the_task(setup: Setup) -> None:
    producer = Producer()
    settle, done, failures = settler(setup, producer)
    job, records = failed_attempt(setup)
    settle.settle(job, records)
    report(producer, {FIRST_TIER: 1})
    await asyncio.sleep(0)
    report(producer, {FIRST_TIER: 1})
    await asyncio.sleep(0)
    assert [topic for topic, _, _ in producer.records] == [
        TOPICS.deliveries_dlt,
        TOPICS.webhook_deliveries,
    ]
    letter = parse_dead_letter(producer.records[0][1]["headers"])
    assert letter.extra["attempts"] == "1"  # the attempt just made counts
    report(producer, {})
    assert done == [7] and failures == []


async def test_an_attempt_record_too_large_stops_the_worker(setup: Setup) -> None:
    """Only the retry record grows with the task; a refused attempt record is a misconfigured
    topic, and dead-lettering would leave the task both on the ladder and in the DLT."""
    producer = Producer()
    settle, done, failures = settler(setup, producer)
    job, records = failed_attempt(setup)
    settle.settle(job, records)
    report(producer, {TOPICS.webhook_deliveries: 1})
    await asyncio.sleep(0)
    assert producer.records == []  # no dead letter
    assert done == [] and len(failures) == 1
