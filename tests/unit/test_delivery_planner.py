"""What each kind of attempt leaves behind: the records the planner returns, decoded and checked.

No broker: the serde runs against confluent-kafka's in-process mock registry and the consumed
records are built with ``confluent_kafka.Message``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

import pytest
from confluent_kafka import Message

from delivery.config import DeliveryConfig
from delivery.outcome import Outcome, Verdict, classify_error, classify_status
from delivery.planner import SOURCE, DeliveryPlanner, WriteBack, disable_write_back
from delivery.retry_headers import FRESH, RetryState, parse_retry_state
from delivery.schema_setup import register_schemas
from delivery.transport import AttemptResult, no_response
from plumbing.kafka.deadletter import header_map, parse_dead_letter
from plumbing.kafka.produce import Record
from schemas import ids
from schemas.delivery_records import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import DecodeError, Serde
from schemas.timestamps import from_epoch_micros
from schemas.topics import Topics
from schemas.transcode import DeliveryTaskJson
from schemas.webhook import Webhook

TOPICS = Topics(prefix="t.", retry_tiers=("5s", "5m"))
FIRST_TIER, LAST_TIER = "t.deliveries.retry.5s", "t.deliveries.retry.5m"
NOW = 1_700_000_000.0
URL = "https://hooks.example.com/in"
OWN_HEADER = ("traceparent", b"00-abc-01")  # a header of the task's own: it must survive


@dataclass
class Webhooks:
    """The webhook view, in memory (the planner reads it and applies disables to it)."""

    by_id: dict[str, Webhook]
    applied: list[Webhook] = field(default_factory=list)

    def get(self, webhook_id: str) -> Webhook | None:
        return self.by_id.get(webhook_id)

    def apply_local(self, webhook: Webhook) -> None:
        self.applied.append(webhook)
        self.by_id[webhook.id] = webhook


@dataclass
class Setup:
    serde: Serde
    webhook: Webhook
    webhooks: Webhooks
    task: DeliveryTaskJson
    value: bytes

    def planner(self, disable_after: float = 0.0) -> DeliveryPlanner:
        config = DeliveryConfig(
            retry_tiers=TOPICS.retry_tiers, jitter=0.0, disable_after=disable_after
        )
        return DeliveryPlanner(config, TOPICS, self.serde, self.webhooks)

    def message(self, topic: str = TOPICS.deliveries, retry: RetryState | None = None) -> Message:
        headers: list[tuple[str, str | bytes | None]] = [
            OWN_HEADER,
            *(retry.headers() if retry else []),
        ]
        return Message(
            topic=topic,
            partition=2,
            offset=7,
            key=self.task.id.encode(),
            value=self.value,
            headers=headers,
            timestamp=(1, 1_699_999_999_000),
        )

    def attempt_record(self, record: Record) -> WebhookDelivery:
        """``record`` decoded as an attempt record of the task (with the project's serde)."""
        assert record.topic == TOPICS.webhook_deliveries
        assert record.key == self.task.id.encode()
        assert record.value is not None
        delivery = self.serde.deliveries.decode(record.value, record.topic)
        assert (delivery.id, delivery.webhook_id, delivery.event_id) == (
            self.task.id,
            self.webhook.id,
            self.task.event.id,
        )
        assert delivery.updated_at == from_epoch_micros(int(NOW * 1_000_000))
        return delivery


@pytest.fixture
def setup() -> Setup:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    register_schemas(serde, TOPICS)
    webhook = Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="ten_test", url=URL)
    event = Event.new(EventType.INSTANCE_CREATED, "ten_test").with_payload({"n": 1})
    value = serde.tasks.encode(DeliveryTask.for_event(event, webhook.id, URL), TOPICS.deliveries)
    task = serde.task_json(value, TOPICS.deliveries)
    return Setup(serde, webhook, Webhooks({webhook.id: webhook}), task, value)


def status_result(status: int, retry_after: str | None = None) -> AttemptResult:
    return AttemptResult(status, classify_status(status, retry_after), 12.5)


def byte_headers(record: Record) -> list[tuple[str, bytes | None]]:
    """``record``'s headers as a consumer would read them back (every value bytes)."""
    pairs: list[tuple[str, bytes | None]] = []
    for name, value in record.headers:
        assert isinstance(value, bytes), (name, value)
        pairs.append((name, value))
    return pairs


def micros_at(seconds: float) -> int:
    return round(seconds * 1_000_000)


def assert_retry_record(
    setup: Setup,
    record: Record,
    topic: str,
    attempts: int,
    due: float,
    result: AttemptResult,
    original: tuple[str, int, int] = (TOPICS.deliveries, 2, 7),
    ladder: int | None = None,
) -> None:
    assert record.topic == topic
    assert (record.key, record.value) == (setup.task.id.encode(), setup.value)
    assert list(record.headers) == [
        OWN_HEADER,
        ("retry-attempt", str(attempts).encode()),
        ("retry-not-before", str(int(due * 1000)).encode()),
        ("retry-original-topic", original[0].encode()),
        ("retry-original-partition", str(original[1]).encode()),
        ("retry-original-offset", str(original[2]).encode()),
        ("retry-last-status", str(result.status).encode()),
        ("retry-last-error", result.outcome.reason.encode()),
        *([] if ladder is None else [("retry-ladder-tier", str(ladder).encode())]),
    ]


def test_a_2xx_leaves_only_a_delivered_attempt_record(setup: Setup) -> None:
    records = setup.planner().after_attempt(
        setup.message(), setup.task, status_result(204), None, FRESH, setup.webhook, NOW
    )
    assert len(records) == 1
    delivery = setup.attempt_record(records[0])
    assert delivery.status is DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.status_code, delivery.duration_ms) == (1, 204, 12.5)
    assert delivery.error is None and delivery.next_retry is None


@pytest.mark.parametrize(
    "result",
    [
        status_result(408),
        status_result(425),
        status_result(500),
        status_result(503),
        AttemptResult(0, Outcome(Verdict.RETRY, "timeout after 15.0s"), 15_000.0),
        AttemptResult(0, classify_error(ConnectionRefusedError("connection refused")), 1.0),
    ],
    ids=["408", "425", "500", "503", "timeout", "connection-error"],
)
def test_a_retryable_failure_goes_to_the_first_tier(setup: Setup, result: AttemptResult) -> None:
    records = setup.planner().after_attempt(
        setup.message(), setup.task, result, None, FRESH, setup.webhook, NOW
    )
    assert [r.topic for r in records] == [FIRST_TIER, TOPICS.webhook_deliveries]
    assert_retry_record(setup, records[0], FIRST_TIER, 1, NOW + 5, result)
    delivery = setup.attempt_record(records[1])
    assert delivery.status is DeliveryStatus.RETRYING
    assert (delivery.attempts, delivery.status_code) == (1, result.status)
    assert delivery.error == result.outcome.reason
    assert delivery.next_retry == from_epoch_micros(micros_at(NOW + 5))


def test_a_429s_retry_after_picks_the_tier_and_the_due_time(setup: Setup) -> None:
    # Ten minutes is longer than every tier: the last tier, due no earlier than asked.
    result = status_result(429, "600")
    assert result.outcome.retry_after == 600
    records = setup.planner().after_attempt(
        setup.message(), setup.task, result, None, FRESH, setup.webhook, NOW
    )
    assert_retry_record(setup, records[0], LAST_TIER, 1, NOW + 600, result)
    delivery = setup.attempt_record(records[1])
    assert delivery.status is DeliveryStatus.RETRYING and delivery.status_code == 429
    assert delivery.next_retry == from_epoch_micros(micros_at(NOW + 600))


def test_a_retry_from_a_tier_moves_up_and_keeps_the_first_coordinates(setup: Setup) -> None:
    earlier = RetryState(1, 1, TOPICS.deliveries, 0, 3, "HTTP 500", 500)
    message = setup.message(FIRST_TIER, earlier)  # at t.deliveries.retry.5s[2]@7
    result = status_result(502)
    records = setup.planner().after_attempt(
        message, setup.task, result, 0, earlier, setup.webhook, NOW
    )
    # The old retry headers are replaced, not repeated; the first home stays deliveries[0]@3.
    assert_retry_record(
        setup, records[0], LAST_TIER, 2, NOW + 300, result, (TOPICS.deliveries, 0, 3)
    )
    assert setup.attempt_record(records[1]).attempts == 2


def assert_dead_letter(
    setup: Setup, record: Record, reason: str, attempts: int, status: int
) -> None:
    assert record.topic == TOPICS.deliveries_dlt
    assert (record.key, record.value) == (setup.task.id.encode(), setup.value)
    letter = parse_dead_letter(byte_headers(record))
    assert letter.reason == reason and letter.source == SOURCE
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        TOPICS.deliveries,
        2,
        7,
    )
    assert letter.extra["failed-at"] == str(int(NOW * 1000))
    assert letter.extra["attempts"] == str(attempts)
    assert letter.extra["last-status"] == str(status)
    assert letter.extra["delivery-id"] == setup.task.id
    assert letter.extra["webhook-id"] == setup.webhook.id
    assert letter.extra["event-id"] == setup.task.event.id
    assert header_map(byte_headers(record))[OWN_HEADER[0]] == OWN_HEADER[1].decode()


def test_a_failure_on_the_last_tier_is_dead_lettered(setup: Setup) -> None:
    earlier = RetryState(2, 1, TOPICS.deliveries, 2, 7, "HTTP 500", 500)
    message = setup.message(TOPICS.deliveries, earlier)
    records = setup.planner().after_attempt(
        message, setup.task, status_result(500), 1, earlier, setup.webhook, NOW
    )
    reason = "retries exhausted after 3 attempts: HTTP 500"
    assert [r.topic for r in records] == [TOPICS.deliveries_dlt, TOPICS.webhook_deliveries]
    assert_dead_letter(setup, records[0], reason, 3, 500)
    delivery = setup.attempt_record(records[1])
    assert delivery.status is DeliveryStatus.DEAD_LETTERED
    assert delivery.attempts == 3 and delivery.next_retry is None
    assert delivery.error == reason


@pytest.mark.parametrize("status", [400, 404, 301])
def test_another_4xx_or_a_redirect_is_dead_lettered_at_once(setup: Setup, status: int) -> None:
    result = status_result(status)
    records = setup.planner().after_attempt(
        setup.message(), setup.task, result, None, FRESH, setup.webhook, NOW
    )
    assert [r.topic for r in records] == [TOPICS.deliveries_dlt, TOPICS.webhook_deliveries]
    assert_dead_letter(setup, records[0], result.outcome.reason, 1, status)
    delivery = setup.attempt_record(records[1])
    assert delivery.status is DeliveryStatus.DEAD_LETTERED
    assert (delivery.attempts, delivery.status_code) == (1, status)
    assert delivery.error == result.outcome.reason and delivery.next_retry is None


def test_a_410_disables_the_webhook_and_dead_letters_the_task(setup: Setup) -> None:
    planner = setup.planner()
    result = status_result(410)
    records = planner.after_attempt(
        setup.message(), setup.task, result, None, FRESH, setup.webhook, NOW
    )
    config_topic, event_topic = TOPICS.webhooks, TOPICS.for_event_type(EventType.WEBHOOK_DISABLED)
    assert [r.topic for r in records] == [
        config_topic,
        event_topic,
        TOPICS.deliveries_dlt,
        TOPICS.webhook_deliveries,
    ]
    written, event_record = records[0], records[1]
    assert written.key == setup.webhook.id.encode() and written.value is not None
    disabled = setup.serde.webhooks.decode(written.value, config_topic)
    assert disabled == replace(
        setup.webhook, active=False, updated_at=from_epoch_micros(micros_at(NOW)), version=1
    )
    assert setup.webhooks.applied == [disabled], "effective here before the topic has it"
    assert event_record.key == b"ten_test" and event_record.value is not None
    event = setup.serde.events.decode(event_record.value, event_topic)
    assert event.type is EventType.WEBHOOK_DISABLED and event.tenant_id == "ten_test"
    assert event.payload == {"webhook_id": setup.webhook.id, "reason": "endpoint answered 410 Gone"}
    assert_dead_letter(setup, records[2], f"{result.outcome.reason}; webhook disabled", 1, 410)
    delivery = setup.attempt_record(records[3])
    assert delivery.status is DeliveryStatus.DISABLED and delivery.status_code == 410

    # Another of its tasks answered 410 too: the webhook is disabled once.
    again = planner.after_attempt(
        setup.message(), setup.task, result, None, FRESH, setup.webhook, NOW
    )
    assert [r.topic for r in again] == [TOPICS.deliveries_dlt, TOPICS.webhook_deliveries]


def test_a_webhook_failing_past_the_window_is_disabled(setup: Setup) -> None:
    planner = setup.planner(disable_after=100)
    first = planner.after_attempt(
        setup.message(), setup.task, status_result(500), None, FRESH, setup.webhook, NOW - 100
    )
    assert TOPICS.webhooks not in [r.topic for r in first]
    records = planner.after_attempt(
        setup.message(), setup.task, status_result(500), None, FRESH, setup.webhook, NOW
    )
    assert [r.topic for r in records][:2] == [
        TOPICS.webhooks,
        TOPICS.for_event_type(EventType.WEBHOOK_DISABLED),
    ]
    assert records[2].topic == FIRST_TIER, "the task itself still retries"
    assert setup.webhooks.applied and not setup.webhooks.applied[0].active


def test_a_success_restarts_the_failure_window(setup: Setup) -> None:
    planner = setup.planner(disable_after=100)
    for at, status in ((NOW - 100, 500), (NOW - 1, 200), (NOW, 500)):
        records = planner.after_attempt(
            setup.message(), setup.task, status_result(status), None, FRESH, setup.webhook, at
        )
        assert TOPICS.webhooks not in [r.topic for r in records]


def test_an_unsigned_attempt_is_dead_lettered_without_counting_to_disable(setup: Setup) -> None:
    result = no_response(Verdict.DEAD_LETTER, "webhook has no active signing secret")
    planner = setup.planner(disable_after=1)
    for at in (NOW - 10, NOW):
        records = planner.after_attempt(setup.message(), setup.task, result, None, FRESH, None, at)
        assert [r.topic for r in records] == [TOPICS.deliveries_dlt, TOPICS.webhook_deliveries]


def test_an_undecodable_task_is_dead_lettered_with_the_reason(setup: Setup) -> None:
    message = Message(
        topic=TOPICS.deliveries, partition=1, offset=9, key=b"k", value=b"junk", timestamp=(1, 5)
    )
    with pytest.raises(DecodeError) as raised:
        setup.serde.task_json(message.value(), TOPICS.deliveries)
    (record,) = setup.planner().undecodable(message, raised.value.reason, NOW)
    assert (record.topic, record.key, record.value) == (TOPICS.deliveries_dlt, b"k", b"junk")
    letter = parse_dead_letter(byte_headers(record))
    assert letter.reason == f"undecodable delivery task: {raised.value.reason}"
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        TOPICS.deliveries,
        1,
        9,
    )
    assert letter.source == SOURCE and "delivery-id" not in letter.extra


def test_a_deferral_goes_back_to_the_same_tier_without_counting_an_attempt(setup: Setup) -> None:
    planner = setup.planner()
    reason = "deferred: 3 tasks queued for this endpoint"
    deferred = no_response(Verdict.RETRY, reason)

    fresh = planner.deferral(setup.message(), setup.task, None, FRESH, reason, NOW)
    # A fresh task keeps its place before the first tier (-1) while it waits in it.
    assert_retry_record(setup, fresh[0], FIRST_TIER, 0, NOW + 5, deferred, ladder=-1)
    delivery = setup.attempt_record(fresh[1])
    assert delivery.status is DeliveryStatus.RETRYING
    assert (delivery.attempts, delivery.status_code, delivery.error) == (0, 0, reason)
    assert delivery.next_retry == from_epoch_micros(micros_at(NOW + 5))

    earlier = RetryState(2, 1, TOPICS.deliveries, 0, 3, "HTTP 500", 500)
    message = setup.message(LAST_TIER, earlier)
    retried = planner.deferral(message, setup.task, 1, earlier, reason, NOW)
    assert_retry_record(
        setup, retried[0], LAST_TIER, 2, NOW + 300, deferred, (TOPICS.deliveries, 0, 3), 1
    )
    assert setup.attempt_record(retried[1]).attempts == 2


def test_an_open_breaker_parks_the_task_until_its_trial_without_counting_it(
    setup: Setup,
) -> None:
    """Parked until the breaker's next trial on the tier that fits the wait, not on the tier
    it came from (5 minutes here), and still on its own tier of the ladder."""
    planner = setup.planner()
    reason = "deferred: circuit open, next trial in 3.0s"
    earlier = RetryState(2, 1, TOPICS.deliveries, 0, 3, "HTTP 500", 500)
    message = setup.message(LAST_TIER, earlier)
    retry, attempt = planner.deferral(message, setup.task, 1, earlier, reason, NOW, NOW + 3)
    deferred = no_response(Verdict.RETRY, reason)
    # 3 s is shorter than the first tier (5 s): due at the trial itself, in the first tier.
    assert_retry_record(
        setup, retry, FIRST_TIER, 2, NOW + 3, deferred, (TOPICS.deliveries, 0, 3), ladder=1
    )
    delivery = setup.attempt_record(attempt)
    assert (delivery.status, delivery.attempts, delivery.error) == (
        DeliveryStatus.RETRYING,
        2,
        reason,
    )
    assert delivery.next_retry == from_epoch_micros(micros_at(NOW + 3))
    # Read back from the first tier, it is still on the second tier of the ladder: its next
    # failure dead-letters it (two tiers), the first-tier wait did not count.
    state = parse_retry_state(byte_headers(retry))
    assert state.ladder_tier == 1 and state.attempts == 2
    records = planner.after_attempt(
        setup.message(FIRST_TIER, state), setup.task, status_result(500), 1, state, None, NOW
    )
    assert records[0].topic == TOPICS.deliveries_dlt


def test_a_task_whose_output_was_refused_is_dead_lettered_with_the_reason(setup: Setup) -> None:
    planner = setup.planner()
    earlier = RetryState(1, 1, TOPICS.deliveries, 0, 3, "HTTP 500", 500)
    message = setup.message(FIRST_TIER, earlier)
    reason = "output too large: t.deliveries.retry.5m refused a record of 5000 bytes (...)"
    letter, attempt = planner.output_refused(message, setup.task, 2, LAST_TIER, reason, NOW)
    assert (letter.topic, letter.value) == (TOPICS.deliveries_dlt, setup.value)
    info = parse_dead_letter(byte_headers(letter))
    assert info.reason == reason and info.extra["attempts"] == "2"
    assert info.extra["delivery-id"] == setup.task.id
    assert parse_retry_state(byte_headers(letter)).original_topic == TOPICS.deliveries
    delivery = setup.attempt_record(attempt)
    assert (delivery.status, delivery.attempts, delivery.error) == (
        DeliveryStatus.DEAD_LETTERED,
        2,
        reason,
    )
    # The attempt record itself refused: only the dead letter.
    records = planner.output_refused(message, setup.task, 2, TOPICS.webhook_deliveries, reason, NOW)
    assert [r.topic for r in records] == [TOPICS.deliveries_dlt]


@pytest.mark.parametrize(
    ("active", "why"), [(False, "webhook inactive"), (None, "webhook deleted")]
)
def test_a_dropped_task_leaves_a_disabled_attempt_record(
    setup: Setup, active: bool | None, why: str
) -> None:
    webhook = None if active is None else replace(setup.webhook, active=active)
    state = RetryState(attempts=2)
    (record,) = setup.planner().dropped(setup.task, state, webhook, NOW)
    delivery = setup.attempt_record(record)
    assert delivery.status is DeliveryStatus.DISABLED
    assert (delivery.attempts, delivery.error, delivery.status_code) == (2, why, 0)


def test_a_disable_is_written_only_on_the_version_it_was_decided_on() -> None:
    at = from_epoch_micros(micros_at(NOW))
    seen = Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="ten_test", url=URL, version=3)
    # Unchanged: the current copy, inactive, as the next version.
    assert disable_write_back(seen, seen, at) == WriteBack(
        replace(seen, active=False, updated_at=at, version=4)
    )
    # Changed since (a rotation landed): nothing written, and it says why.
    rotated = replace(seen, version=4)
    assert disable_write_back(seen, rotated, at) == WriteBack(None, changed=True)
    # Nothing to disable.
    assert disable_write_back(seen, None, at) == WriteBack(None)
    assert disable_write_back(seen, replace(seen, active=False, version=4), at) == WriteBack(None)


def test_a_410_about_an_older_version_retries_the_task_on_the_current_one(setup: Setup) -> None:
    planner = setup.planner(disable_after=100)
    first = planner.after_attempt(
        setup.message(), setup.task, status_result(500), None, FRESH, setup.webhook, NOW - 100
    )
    assert TOPICS.webhooks not in [r.topic for r in first]
    # The webhook was rotated (version 1) after this attempt was sent with version 0: neither
    # the failure window nor the 410 may write back a disable decided on version 0.
    setup.webhooks.by_id[setup.webhook.id] = replace(setup.webhook, version=1)
    records = planner.after_attempt(
        setup.message(), setup.task, status_result(410), None, FRESH, setup.webhook, NOW
    )
    assert [r.topic for r in records] == [FIRST_TIER, TOPICS.webhook_deliveries]
    assert setup.webhooks.applied == [], "nothing written back"
    assert setup.attempt_record(records[1]).status is DeliveryStatus.RETRYING
    # The window stays expired: the next failure, of the current version, decides again.
    current = setup.webhooks.by_id[setup.webhook.id]
    again = planner.after_attempt(
        setup.message(), setup.task, status_result(500), None, FRESH, current, NOW + 1
    )
    assert again[0].topic == TOPICS.webhooks
    assert setup.webhooks.applied[-1] == replace(
        current, active=False, updated_at=from_epoch_micros(micros_at(NOW + 1)), version=2
    )
