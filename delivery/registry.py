"""Register the schemas the worker reads and writes before it handles a record."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import ids
from schemas.catalog import EventType, Topics
from schemas.delivery import DeliveryStatus, DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.serde import Serde
from schemas.webhook import Webhook


def register_schemas(serde: Serde, topics: Topics) -> None:
    """Register the task, webhook and attempt-record schemas under their topics' subjects.

    Up front, so the first record does not pay for registration, and always in this order: two
    processes that each use an in-process ``mock://`` registry (the tests) then assign the same
    schema ids and can read each other's records. Against a real registry this is idempotent.
    """
    moment = datetime(2000, 1, 1, tzinfo=UTC)
    event = Event(
        id=ids.new_id(ids.EVENT), type=EventType.INSTANCE_CREATED, tenant_id="t", timestamp=moment
    )
    webhook = Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="t", url="https://example.invalid/")
    task = DeliveryTask.for_event(event, webhook.id, webhook.url)
    record = WebhookDelivery(
        id=task.id,
        webhook_id=webhook.id,
        event_id=event.id,
        tenant_id="t",
        status=DeliveryStatus.PENDING,
        attempts=0,
    )
    serde.tasks.encode(task, topics.deliveries)
    serde.webhooks.encode(webhook, topics.webhooks)
    serde.deliveries.encode(record, topics.webhook_deliveries)
