"""Reading the views: filters and orderings, pure."""

from __future__ import annotations

from collections.abc import Iterable

from producers.gateway.validation import DeliveryQuery
from schemas.delivery_records import WebhookDelivery
from schemas.webhook import Webhook


def tenant_webhooks(webhooks: Iterable[Webhook], tenant_id: str | None) -> list[Webhook]:
    """Webhooks of ``tenant_id`` (None: all), oldest first."""
    chosen = [w for w in webhooks if tenant_id is None or w.tenant_id == tenant_id]
    return sorted(chosen, key=lambda w: (w.created_at, w.id))


def find_deliveries(
    deliveries: Iterable[WebhookDelivery], query: DeliveryQuery
) -> list[WebhookDelivery]:
    """The deliveries matching every filter of ``query``, most recently updated first."""
    chosen = [
        d
        for d in deliveries
        if (query.tenant_id is None or d.tenant_id == query.tenant_id)
        and (query.event_id is None or d.event_id == query.event_id)
        and (query.webhook_id is None or d.webhook_id == query.webhook_id)
        and (query.status is None or d.status == query.status)
    ]
    chosen.sort(key=lambda d: (d.updated_at, d.id), reverse=True)
    return chosen[: query.limit]
