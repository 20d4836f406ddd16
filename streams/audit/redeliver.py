"""Send historical events to a webhook again, through the normal delivery path.

A redelivery is a DeliveryTask on the deliveries topic, exactly what the router writes, so the
delivery worker signs it (``webhook-id`` = the event id, as the first time) and records the new
attempts. The webhook is looked up in the compacted webhooks topic, the source of truth.
"""

from __future__ import annotations

from confluent_kafka import Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.produce import BatchAck, Headers, PublishError, Record
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from plumbing.tracing import TRACEPARENT, TRACESTATE
from schemas.delivery_records import DeliveryTask
from schemas.errors import ContractError
from schemas.event import Event
from schemas.filters import compile_filter
from schemas.serde import DecodeError, Serde
from schemas.webhook import Webhook
from streams.audit.filters import RecordFilter, expand_type_patterns

TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})


class RedeliveryRefused(ContractError):
    """The webhook cannot receive this redelivery; ``field`` names the option at fault."""


def redelivery_filter(
    selection: RecordFilter, webhook: Webhook | None, webhook_id: str
) -> RecordFilter:
    """``selection`` narrowed to what ``webhook`` may receive, or RedeliveryRefused.

    Only the webhook's own tenant's events, only types it subscribes to (an empty
    subscription list means every type), and only events its payload filter accepts.
    """
    if webhook is None:
        raise RedeliveryRefused("webhook", f"{webhook_id} does not exist")
    if not webhook.active:
        raise RedeliveryRefused("webhook", f"{webhook.id} is inactive")
    others = selection.tenants - {webhook.tenant_id}
    if others:
        raise RedeliveryRefused(
            "tenant",
            f"{webhook.id} belongs to another tenant than {', '.join(sorted(others))}",
        )
    types = selection.types
    if webhook.events:
        subscribed = expand_type_patterns(webhook.events, "events", strict=False)
        types = (types & subscribed) if types else subscribed
        if not types:
            raise RedeliveryRefused("type", f"{webhook.id} subscribes to none of these types")
    payload_filter = webhook.payload_filter
    return RecordFilter(
        tenants=frozenset({webhook.tenant_id}),
        types=types,
        instances=selection.instances,
        accepts=None if payload_filter is None else compile_filter(payload_filter),
    )


def load_webhook(
    settings: Settings, serde: Serde, webhook_id: str, timeout: float = 30.0
) -> Webhook | None:
    """The current config of ``webhook_id`` from the compacted webhooks topic (None if absent)."""
    topic = settings.topics.webhooks

    def decode(message: Message) -> tuple[str, Webhook | None]:
        key = (message.key() or b"").decode(errors="replace")
        if message.value() is None:
            return key, None
        try:
            return key, serde.webhooks.decode(message.value(), topic)
        except DecodeError as exc:
            raise ValueError(exc.reason) from None

    view: CompactedTopicView[Webhook] = CompactedTopicView(settings, topic, decode)
    view.start()
    try:
        view.wait_until_caught_up(timeout)
        return view.get(webhook_id)
    finally:
        view.stop()


# The CLI catches this name; a redelivery that Kafka did not store is a PublishError like any.
RedeliveryError = PublishError


class TaskSender:
    """Produces delivery tasks keyed by webhook id; ``close`` waits for every acknowledgement."""

    def __init__(self, settings: Settings, serde: Serde, webhook: Webhook) -> None:
        self._topic = settings.topics.deliveries
        self._encode = serde.tasks.encode
        self._webhook = webhook
        self._key = webhook.id.encode()
        self._producer = Producer(producer_config(settings))
        # One counter for the whole replay, however long: no state per task.
        self._ack = BatchAck("redelivery tasks")
        self.sent = 0

    def send(self, event: Event, event_headers: Headers = ()) -> DeliveryTask:
        """Produce the delivery task of ``event`` (waits for room if the local queue is full).

        The event record's trace headers (``event_headers``' ``traceparent``/``tracestate``)
        go on the task, so the redelivery's attempts are spans of the event's original trace,
        beside the first delivery's.
        """
        task = DeliveryTask.for_event(event, self._webhook.id, self._webhook.url)
        trace_headers = [(name, value) for name, value in event_headers if name in TRACE_HEADERS]
        self._ack.send(
            self._producer,
            Record(self._topic, self._key, self._encode(task, self._topic), trace_headers),
        )
        self.sent += 1
        return task

    def close(self, timeout: float = 60.0) -> None:
        """Wait until Kafka acknowledged every task; RedeliveryError if any was not stored."""
        self._ack.wait(self._producer, timeout)
