"""Register the schemas the worker reads and writes before it handles a record."""

from __future__ import annotations

from schemas.event_types import EventType
from schemas.serde import Serde
from schemas.topics import Topics


def register_schemas(serde: Serde, topics: Topics) -> None:
    """Register the task, webhook, attempt-record and (operational) event schemas under their
    topics' subjects.

    Up front, so that the first record does not pay for registration and a registry that
    refuses our schemas (unreachable, incompatible) stops the worker at start, not mid-stream.
    """
    serde.tasks.schema_id(topics.deliveries)
    serde.webhooks.schema_id(topics.webhooks)
    serde.deliveries.schema_id(topics.webhook_deliveries)
    serde.events.schema_id(topics.for_event_type(EventType.WEBHOOK_DISABLED))
