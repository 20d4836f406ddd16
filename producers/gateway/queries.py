"""Reading the webhook view: filters and orderings, pure (deliveries: ``delivery_index``)."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.webhook import Webhook


def tenant_webhooks(webhooks: Iterable[Webhook], tenant_id: str | None) -> list[Webhook]:
    """Webhooks of ``tenant_id`` (None: all), oldest first."""
    chosen = [w for w in webhooks if tenant_id is None or w.tenant_id == tenant_id]
    return sorted(chosen, key=lambda w: (w.created_at, w.id))
