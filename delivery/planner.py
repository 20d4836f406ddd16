"""What a task leaves behind: its attempt record, and a retry, a dead letter or a disable.

Pure decisions: records in, records out, the time passed in. No Kafka client, no clock: the
worker produces what the planner returns. The only state is the auto-disable clock per webhook
(:class:`FailureWindows`, time passed in) and the webhook view a disable is applied to.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple, Protocol

from confluent_kafka import Message

from delivery.config import DeliveryConfig
from delivery.health import FailureWindows
from delivery.outcome import Verdict
from delivery.retry_headers import RetryState, without_retry_headers
from delivery.schedule import RetryLadder, Step
from delivery.transport import AttemptResult, no_response
from plumbing.kafka.deadletter import dead_letter_headers
from plumbing.kafka.produce import Record, message_headers
from schemas import ids
from schemas.delivery_records import DeliveryStatus
from schemas.event import Event
from schemas.event_types import EventType
from schemas.serde import Serde
from schemas.timestamps import from_epoch_micros
from schemas.topics import Topics
from schemas.transcode import DeliveryTaskJson
from schemas.webhook import Webhook

log = logging.getLogger(__name__)

# The dead-letter source of the delivery worker (``dlt-source``).
SOURCE = "delivery"


class WebhookStates(Protocol):
    """The webhooks as this worker sees them (``delivery.webhooks.WebhookDirectory``)."""

    def get(self, webhook_id: str) -> Webhook | None:
        """The current version of the webhook, if any."""

    def apply_local(self, webhook: Webhook) -> None:
        """Use ``webhook`` (being written by this worker) until the topic has it."""


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class WriteBack(NamedTuple):
    """What a decision to disable a webhook writes: ``webhook``, the inactive next version
    (None: nothing to write); ``changed``: nothing written because the webhook changed since."""

    webhook: Webhook | None
    changed: bool = False


def disable_write_back(seen: Webhook, current: Webhook | None, at: datetime) -> WriteBack:
    """The write-back of a decision to disable a webhook, made on its version ``seen``:
    ``current`` (the freshest copy this worker has) made inactive as the next version, updated
    ``at``. Nothing if it is deleted or inactive already; nothing, ``changed``, if it is not
    ``seen``'s version any more (a rotation, a new URL): written from a stale decision, the
    disable could undo that change, so the next attempt decides again on the current version.
    """
    if current is None or not current.active:
        return WriteBack(None)
    if current.version != seen.version:
        return WriteBack(None, changed=True)
    return WriteBack(replace(current, active=False, updated_at=at, version=current.version + 1))


class DeliveryPlanner:
    """Turns a task's fate into the records to produce for it.

    ``tier`` is the retry tier a task was read from: None for a fresh task from the
    deliveries topic, else an index into ``config.retry_tiers``.
    """

    def __init__(
        self, config: DeliveryConfig, topics: Topics, serde: Serde, webhooks: WebhookStates
    ) -> None:
        self.ladder = RetryLadder(config.retry_tiers, config.jitter)
        self._failing = FailureWindows(config.disable_after)
        self._disable_after = config.disable_after
        self._serde = serde
        self._webhooks = webhooks
        self._topics = topics
        # Topic names, built once: they are looked up for every attempt.
        self._attempts_topic = topics.webhook_deliveries
        self._dead_letter_topic = self.dead_letter_topic = topics.deliveries_dlt
        self._webhooks_topic = topics.webhooks
        self._retry_topics = self.retry_topics = tuple(
            topics.retry(name) for name in self.ladder.names
        )

    def after_attempt(
        self,
        message: Message,
        task: DeliveryTaskJson,
        result: AttemptResult,
        tier: int | None,
        state: RetryState,
        webhook: Webhook | None,
        now: float,
    ) -> list[Record]:
        """What an attempt (the ``state.attempts + 1``-th) of ``message`` leaves behind.

        ``webhook`` is None for an attempt never sent for want of a usable secret: it counts
        towards no auto-disable.
        """
        attempt = state.attempts + 1
        if result.outcome.verdict is Verdict.DELIVERED:
            if webhook is not None:
                self._failing.record(webhook.id, success=True, now=now)
            return [
                self._attempt_record(
                    task,
                    DeliveryStatus.DELIVERED,
                    attempt,
                    result.status,
                    None,
                    None,
                    result.duration_ms,
                    now,
                )
            ]
        return self._after_failure(message, task, result, attempt, tier, state, webhook, now)

    def _after_failure(
        self,
        message: Message,
        task: DeliveryTaskJson,
        result: AttemptResult,
        attempt: int,
        tier: int | None,
        state: RetryState,
        webhook: Webhook | None,
        now: float,
    ) -> list[Record]:
        outcome = result.outcome
        verdict = outcome.verdict
        records: list[Record] = []
        status = DeliveryStatus.DEAD_LETTERED
        next_retry: int | None = None  # epoch microseconds
        error = outcome.reason
        extra = {"attempts": str(attempt), "last-status": str(result.status)}
        if webhook is not None and self._failing.record(webhook.id, success=False, now=now):
            why = f"failing for {self._disable_after}s without a success"
            records.extend(self._disable(webhook, why, now) or ())
        if verdict is Verdict.GONE and webhook is not None:
            # A no-op when the failure window just disabled it: one disable per webhook.
            disable = self._disable(webhook, "endpoint answered 410 Gone", now)
            if disable is None:
                # The webhook changed since this attempt was made (its URL, say): the 410 is
                # about a version that is no more, so the task tries the current one.
                verdict = Verdict.RETRY
            else:
                records.extend(disable)
        if verdict is Verdict.RETRY:
            step = self.ladder.next_step(tier, now, outcome.retry_after)
            if step is None:
                error = f"retries exhausted after {attempt} attempts: {outcome.reason}"
                records.append(self._dead_letter(message, error, extra, task, now))
            else:
                status = DeliveryStatus.RETRYING
                next_retry = _micros(step.not_before)
                records.append(self._retry(message, attempt, step, result, state))
        elif verdict is Verdict.DEAD_LETTER:
            records.append(self._dead_letter(message, outcome.reason, extra, task, now))
        elif verdict is Verdict.GONE:
            status = DeliveryStatus.DISABLED
            why = f"{outcome.reason}; webhook disabled"
            records.append(self._dead_letter(message, why, extra, task, now))
        records.append(
            self._attempt_record(
                task, status, attempt, result.status, error, next_retry, result.duration_ms, now
            )
        )
        return records

    def deferral(
        self,
        message: Message,
        task: DeliveryTaskJson,
        tier: int | None,
        state: RetryState,
        reason: str,
        now: float,
        until: float | None = None,
    ) -> list[Record]:
        """The task parked, with no attempt made or counted (attempt record ``retrying``,
        error ``reason``): until about ``until`` (epoch s; ``RetryLadder.parking``) if given,
        else in the retry tier it came from (the first for a fresh task). Either way it keeps
        its place on the ladder (``tier``), whatever tier topic it waits on."""
        if until is None:
            step = self.ladder.step_in(0 if tier is None else tier, now)
        else:
            step = self.ladder.parking(until, now)
        attempts = state.attempts
        result = no_response(Verdict.RETRY, reason)
        ladder = -1 if tier is None else tier
        return [
            self._retry(message, attempts, step, result, state, ladder),
            self._attempt_record(
                task,
                DeliveryStatus.RETRYING,
                attempts,
                0,
                reason,
                _micros(step.not_before),
                0.0,
                now,
            ),
        ]

    def dropped(
        self, task: DeliveryTaskJson, state: RetryState, webhook: Webhook | None, now: float
    ) -> list[Record]:
        """The record of a task never posted because its webhook is deleted or inactive."""
        why = "webhook deleted" if webhook is None else "webhook inactive"
        log.info("dropping delivery %s: %s", task.id, why)
        status = DeliveryStatus.DISABLED
        return [self._attempt_record(task, status, state.attempts, 0, why, None, 0.0, now)]

    def output_refused(
        self,
        message: Message,
        task: DeliveryTaskJson,
        attempts: int,
        refused_topic: str,
        reason: str,
        now: float,
    ) -> list[Record]:
        """What replaces the outputs of a task when Kafka refused one of them for good (too
        large): the task dead-lettered with ``reason``, and an attempt record saying so (unless
        the attempt record was the one refused). ``attempts``: the attempts made so far."""
        extra = {"attempts": str(attempts)}
        records = [self._dead_letter(message, reason, extra, task, now)]
        if refused_topic != self._attempts_topic:
            status = DeliveryStatus.DEAD_LETTERED
            records.append(self._attempt_record(task, status, attempts, 0, reason, None, 0.0, now))
        return records

    def undecodable(self, message: Message, reason: str, now: float) -> list[Record]:
        """The dead letter of a task that cannot be read (no attempt record: no task id)."""
        return [self._dead_letter(message, f"undecodable delivery task: {reason}", {}, None, now)]

    # -- the records ----------------------------------------------------------------------------

    def _retry(
        self,
        message: Message,
        attempts: int,
        step: Step,
        result: AttemptResult,
        state: RetryState,
        ladder: int | None = None,
    ) -> Record:
        """``message`` again, in the tier of ``step``, with the retry headers brought up to
        date (its first coordinates kept from the first time it entered the ladder); ``ladder``
        is its tier on the ladder when that is not ``step``'s (a deferral)."""
        first = state if state.original_topic else None
        retry = RetryState(
            attempts=attempts,
            not_before_ms=int(step.not_before * 1000),
            original_topic=first.original_topic if first else message.topic(),
            original_partition=first.original_partition if first else message.partition() or 0,
            original_offset=first.original_offset if first else message.offset() or 0,
            last_error=result.outcome.reason,
            last_status=result.status,
            ladder_tier=ladder,
        )
        return Record(
            self._retry_topics[step.tier],
            message.key(),
            message.value(),
            without_retry_headers(message_headers(message)) + retry.headers(),
        )

    def _dead_letter(
        self,
        message: Message,
        reason: str,
        extra: dict[str, str],
        task: DeliveryTaskJson | None,
        now: float,
    ) -> Record:
        if task is not None:
            extra = {
                **extra,
                "delivery-id": task.id,
                "webhook-id": task.webhook_id,
                "tenant-id": task.tenant_id,
                "event-id": task.event.id,
            }
        headers = dead_letter_headers(message, reason, SOURCE, int(now * 1000), extra)
        log.info(
            "dead-lettering %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        return Record(self._dead_letter_topic, message.key(), message.value(), headers)

    def _disable(self, seen: Webhook, reason: str, now: float) -> list[Record] | None:
        """The webhook written back inactive, and the operational event that says so; nothing
        if it is inactive already (several of its attempts may fail at once, e.g. 410s); None,
        nothing written, if it changed since the version the decision was made on (``seen``)."""
        current = self._webhooks.get(seen.id)
        at = from_epoch_micros(_micros(now))
        disabled, changed = disable_write_back(seen, current, at)
        if changed:
            assert current is not None
            log.info(
                "not disabling webhook %s (%s): it changed since (version %d, now %d); the next "
                "attempt decides on the current version",
                seen.id,
                reason,
                seen.version,
                current.version,
            )
            return None
        self._failing.forget(seen.id)
        if disabled is None:
            return []  # deleted, or inactive already
        webhook = seen
        log.warning("disabling webhook %s (tenant %s): %s", webhook.id, webhook.tenant_id, reason)
        # Effective here at once: tasks already queued for this endpoint must not be sent
        # while our own write travels through the webhooks topic back into the view.
        self._webhooks.apply_local(disabled)
        event = Event(
            id=ids.new_id(ids.EVENT),
            type=EventType.WEBHOOK_DISABLED,
            tenant_id=webhook.tenant_id,
            timestamp=at,
            payload={"webhook_id": webhook.id, "reason": reason},
        )
        event_topic = self._topics.for_event_type(event.type)
        config_topic = self._webhooks_topic
        return [
            Record(
                config_topic,
                webhook.id.encode(),
                self._serde.webhooks.encode(disabled, config_topic),
            ),
            # Keyed by tenant, like every event: a tenant's events keep their order.
            Record(
                event_topic,
                webhook.tenant_id.encode(),
                self._serde.events.encode(event, event_topic),
            ),
        ]

    def _attempt_record(
        self,
        task: DeliveryTaskJson,
        status: DeliveryStatus,
        attempts: int,
        status_code: int,
        error: str | None,
        next_retry_micros: int | None,
        duration_ms: float,
        now: float,
    ) -> Record:
        """The attempt record (``WebhookDelivery``) of ``task``, updated at ``now``."""
        topic = self._attempts_topic
        value = self._serde.attempt_record(
            topic,
            task,
            status,
            attempts,
            status_code,
            error,
            next_retry_micros,
            duration_ms,
            int(now * 1_000_000),
        )
        return Record(topic, task.id.encode(), value)
