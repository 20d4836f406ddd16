"""What ``cpevents status`` shows, read from Kafka rather than from any running worker.

- each of our consumer groups' lag per topic (``plumbing.kafka.lag``);
- the dead-letter topics' sizes (records retained);
- endpoints whose breaker is open, judged from the attempt log (``webhook-deliveries``): an
  endpoint whose latest attempts are circuit-open deferrals, or a run of at least
  ``CPEVENTS_DELIVERY_BREAKER_FAILURES`` failures with no success since, within the window;
- webhooks disabled in the last day (the ``webhook.disabled`` events the delivery worker
  writes), with their URL from the webhooks topic;
- attempts in the last minute by outcome (the attempt log again).

Gathering (:func:`gather`) is the I/O; the summaries (:func:`breaker_endpoints`,
:func:`outcome_counts`) are pure and unit-tested.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from delivery.outcome import RETRYABLE_4XX
from delivery.sender import endpoint_key
from delivery.worker import group_id as delivery_group
from plumbing.kafka.lag import LagReader, LagSample
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryStatus, WebhookDelivery
from schemas.event_types import EventType
from schemas.serde import DecodeError, Serde
from schemas.webhook import Webhook
from streams.app import app_id as streams_group
from streams.audit.reader import RangeReader
from streams.audit.timerange import TimeRange

__all__ = [
    "Attempt",
    "BreakerInfo",
    "DisabledWebhook",
    "Status",
    "breaker_endpoints",
    "gather",
    "outcome_counts",
]

DAY_MS = 24 * 3600 * 1000
CIRCUIT_OPEN = "deferred: circuit open"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt record as status needs it: when (ms), where, and what came of it."""

    at_ms: int
    webhook_id: str
    endpoint: str
    status: str
    status_code: int
    error: str | None

    @property
    def outcome(self) -> str:
        """delivered, retrying, deferred, dead_lettered or disabled (as the worker counts)."""
        if self.status == DeliveryStatus.RETRYING and (self.error or "").startswith("deferred:"):
            return "deferred"
        return self.status


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    """An endpoint judged to have an open breaker, and the evidence."""

    endpoint: str
    failures: int
    last_error: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class DisabledWebhook:
    """A webhook the delivery worker disabled."""

    webhook_id: str
    tenant_id: str
    url: str
    reason: str
    at_ms: int


@dataclass
class Status:
    """Everything ``cpevents status`` prints."""

    lag: list[LagSample] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    breakers: list[BreakerInfo] = field(default_factory=list)
    disabled: list[DisabledWebhook] = field(default_factory=list)
    attempts_last_minute: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "lag": [asdict(s) for s in self.lag],
            "dead_letters": self.dead_letters,
            "open_breakers": [asdict(b) for b in self.breakers],
            "disabled_webhooks": [asdict(d) for d in self.disabled],
            "attempts_last_minute": self.attempts_last_minute,
            "breaker_window_s": self.window_s,
        }


def outcome_counts(attempts: Iterable[Attempt], since_ms: int) -> dict[str, int]:
    """Attempts at or after ``since_ms`` by outcome (every outcome present, zero or not)."""
    counts = dict.fromkeys(("delivered", "retrying", "deferred", "dead_lettered", "disabled"), 0)
    for attempt in attempts:
        if attempt.at_ms >= since_ms:
            counts[attempt.outcome] = counts.get(attempt.outcome, 0) + 1
    return counts


def _breaker_failure(attempt: Attempt) -> bool:
    """Whether the worker's breaker counted the attempt as a failure: no answer, a 5xx or a
    "not now" 4xx (what is retried), whether retried or dead-lettered once retries ran out."""
    if attempt.outcome not in ("retrying", "dead_lettered"):
        return False
    code = attempt.status_code
    return code == 0 or code >= 500 or code in RETRYABLE_4XX


def breaker_endpoints(attempts: Sequence[Attempt], threshold: int) -> list[BreakerInfo]:
    """Endpoints whose breaker is open as of the last of ``attempts`` (in time order): their
    latest record is a circuit-open deferral, or ``threshold`` failures in a row came after
    their last success. Deferrals for other reasons neither open nor close it."""
    runs: dict[str, tuple[int, str, int, bool]] = {}  # failures, error, since, circuit open
    for attempt in attempts:
        failures, error, since, circuit = runs.get(attempt.endpoint, (0, "", 0, False))
        outcome = attempt.outcome
        if outcome == "deferred":
            if (attempt.error or "").startswith(CIRCUIT_OPEN):
                runs[attempt.endpoint] = (failures, error or attempt.error or "", since, True)
        elif _breaker_failure(attempt):
            start = since or attempt.at_ms
            runs[attempt.endpoint] = (failures + 1, attempt.error or "", start, circuit)
        elif outcome in ("delivered", "dead_lettered"):
            # The endpoint answered (a 4xx dead letter too): the worker's breaker closes.
            runs[attempt.endpoint] = (0, "", 0, False)
    return sorted(
        (
            BreakerInfo(endpoint, failures, error, since)
            for endpoint, (failures, error, since, circuit) in runs.items()
            if circuit or failures >= threshold
        ),
        key=lambda b: b.endpoint,
    )


# -- reading Kafka --------------------------------------------------------------------------------


def _webhooks(settings: Settings, serde: Serde) -> dict[str, Webhook]:
    """The latest version of every webhook (the compacted webhooks topic, read whole)."""
    found: dict[str, Webhook] = {}
    topic = settings.topics.webhooks
    with RangeReader(settings, [topic], TimeRange(), headers=False) as reader:
        for record in reader.records():
            key = (record.key or b"").decode(errors="replace")
            if record.value is None:
                found.pop(key, None)  # deleted (a tombstone)
                continue
            try:
                found[key] = serde.webhooks.decode(record.value, topic)
            except DecodeError:
                continue
    return found


def _attempts(
    settings: Settings, serde: Serde, since_ms: int, urls: dict[str, str]
) -> list[Attempt]:
    topic = settings.topics.webhook_deliveries
    attempts = []
    with RangeReader(settings, [topic], TimeRange(since_ms, None), headers=False) as reader:
        for record in reader.records():
            try:
                delivery: WebhookDelivery = serde.deliveries.decode(record.value, topic)
            except DecodeError:
                continue
            url = urls.get(delivery.webhook_id)
            attempts.append(
                Attempt(
                    record.timestamp_ms,
                    delivery.webhook_id,
                    endpoint_key(url) if url else f"webhook {delivery.webhook_id}",
                    str(delivery.status),
                    delivery.status_code,
                    delivery.error,
                )
            )
    return attempts


def _disabled(
    settings: Settings, serde: Serde, since_ms: int, webhooks: dict[str, Webhook]
) -> list[DisabledWebhook]:
    topic = settings.topics.for_event_type(EventType.WEBHOOK_DISABLED)
    disabled = []
    with RangeReader(settings, [topic], TimeRange(since_ms, None), headers=False) as reader:
        for record in reader.records():
            try:
                event = serde.events.decode(record.value, topic)
            except DecodeError:
                continue
            if event.type != EventType.WEBHOOK_DISABLED:
                continue
            webhook_id = str(event.payload.get("webhook_id", ""))
            webhook = webhooks.get(webhook_id)
            disabled.append(
                DisabledWebhook(
                    webhook_id,
                    event.tenant_id,
                    webhook.url if webhook is not None else "",
                    str(event.payload.get("reason", "")),
                    record.timestamp_ms,
                )
            )
    return disabled


def _lag(settings: Settings, reader: LagReader) -> list[LagSample]:
    topics = settings.topics
    subscriptions = {
        streams_group(settings): topics.all_events,
        delivery_group(settings): [
            topics.deliveries,
            *(topics.retry(tier) for tier in settings.retry_tiers),
        ],
    }
    groups = sorted(set(reader.groups(settings.topic_prefix)) | set(subscriptions))
    samples: list[LagSample] = []
    for group in groups:
        samples.extend(reader.lags(group, subscriptions.get(group, ())))
    return samples


def _dead_letters(settings: Settings, reader: LagReader) -> dict[str, int]:
    topics = settings.topics
    names = [topics.events_dlt, topics.deliveries_dlt, topics.bus_dlt]
    sizes = dict.fromkeys(names, 0)
    for (topic, _), (low, high) in reader.ends(reader.partitions(names)).items():
        sizes[topic] += max(high - low, 0)
    return sizes


def gather(settings: Settings, serde: Serde, window_s: float = 120.0) -> Status:
    """Read everything ``cpevents status`` shows (blocking Kafka reads). The attempt log is
    read over the last ``window_s`` seconds (at least the last minute)."""
    now_ms = int(time.time() * 1000)
    window_ms = int(max(window_s, 60.0) * 1000)
    reader = LagReader(settings)
    status = Status(window_s=window_ms / 1000)
    try:
        status.lag = _lag(settings, reader)
        status.dead_letters = _dead_letters(settings, reader)
    finally:
        reader.close()
    webhooks = _webhooks(settings, serde)
    urls = {webhook_id: webhook.url for webhook_id, webhook in webhooks.items()}
    attempts = _attempts(settings, serde, now_ms - window_ms, urls)
    status.breakers = breaker_endpoints(attempts, settings.delivery_breaker_failures)
    status.attempts_last_minute = outcome_counts(attempts, now_ms - 60_000)
    status.disabled = _disabled(settings, serde, now_ms - DAY_MS, webhooks)
    return status
