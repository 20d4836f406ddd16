"""Send historical events to a webhook again, through the normal delivery path.

A redelivery is a DeliveryTask on the deliveries topic, exactly what the router writes, so the
delivery worker signs it (``webhook-id`` = the event id, as the first time) and records the new
attempts. The webhook is looked up in the compacted webhooks topic, the source of truth.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from plumbing.kafka.clients import producer_config
from plumbing.kafka.view import CompactedTopicView
from plumbing.settings import Settings
from schemas.delivery_records import DeliveryTask
from schemas.errors import ContractError
from schemas.event import Event
from schemas.serde import DecodeError, Serde
from schemas.webhook import Webhook
from streams.audit.filters import RecordFilter, expand_type_patterns


class RedeliveryRefused(ContractError):
    """The webhook cannot receive this redelivery; ``field`` names the option at fault."""


def redelivery_filter(
    selection: RecordFilter, webhook: Webhook | None, webhook_id: str
) -> RecordFilter:
    """``selection`` narrowed to what ``webhook`` may receive, or RedeliveryRefused.

    Only the webhook's own tenant's events, and only types it subscribes to (an empty
    subscription list means every type).
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
    return RecordFilter(
        tenants=frozenset({webhook.tenant_id}),
        types=types,
        instances=selection.instances,
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


class RedeliveryError(RuntimeError):
    """Kafka did not acknowledge every redelivery task."""


class TaskSender:
    """Produces delivery tasks keyed by webhook id; ``close`` waits for every acknowledgement."""

    def __init__(self, settings: Settings, serde: Serde, webhook: Webhook) -> None:
        self._topic = settings.topics.deliveries
        self._encode = serde.tasks.encode
        self._webhook = webhook
        self._producer = Producer(producer_config(settings))
        self._errors: list[str] = []
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err.str())

    def send(self, event: Event) -> DeliveryTask:
        task = DeliveryTask.for_event(event, self._webhook.id, self._webhook.url)
        value = self._encode(task, self._topic)
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=self._webhook.id.encode(),
                    value=value,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain
        self._producer.poll(0)
        self.sent += 1
        return task

    def close(self, timeout: float = 60.0) -> None:
        """Wait until Kafka acknowledged every task; RedeliveryError if any was not stored."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise RedeliveryError(f"{remaining} redelivery tasks not acknowledged in {timeout}s")
        if self._errors:
            raise RedeliveryError(f"{len(self._errors)} redelivery tasks failed: {self._errors[0]}")
