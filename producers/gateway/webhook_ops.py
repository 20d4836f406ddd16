"""Webhook lifecycle rules (create, update, rotate a secret) as pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from producers.gateway.validation import WebhookCreate
from schemas import ids
from schemas.secrets import SecretBox, generate_secret
from schemas.webhook import EncryptedSecret, Webhook


def create_webhook(
    request: WebhookCreate, tenant_id: str, box: SecretBox, now: datetime
) -> tuple[Webhook, str]:
    """A new webhook and its signing secret (plaintext, to be shown once)."""
    secret = generate_secret()
    webhook = Webhook(
        id=ids.new_id(ids.WEBHOOK),
        tenant_id=tenant_id,
        url=request.url,
        events=request.events,
        active=request.active,
        secrets=(EncryptedSecret(box.encrypt(secret), now),),
        created_at=now,
        updated_at=now,
    )
    return webhook, secret


def update_webhook(webhook: Webhook, changes: dict[str, Any], now: datetime) -> Webhook:
    """``webhook`` with ``changes`` (url, events, active) applied."""
    return Webhook(
        id=webhook.id,
        tenant_id=webhook.tenant_id,
        url=changes.get("url", webhook.url),
        events=changes.get("events", webhook.events),
        active=changes.get("active", webhook.active),
        secrets=webhook.secrets,
        created_at=webhook.created_at,
        updated_at=now,
    )


def rotate_secret(
    webhook: Webhook, box: SecretBox, overlap: timedelta, now: datetime
) -> tuple[Webhook, str]:
    """A new current secret; the secrets active now stay valid until ``now + overlap``.

    Secrets that already expired are dropped, so rotating often does not grow the record.
    """
    secret = generate_secret()
    ends = now + overlap
    kept = [
        EncryptedSecret(
            s.ciphertext,
            s.created_at,
            ends if s.expires_at is None or s.expires_at > ends else s.expires_at,
        )
        for s in webhook.secrets
        if s.active_at(now)
    ]
    if overlap <= timedelta(0):
        kept = []
    rotated = Webhook(
        id=webhook.id,
        tenant_id=webhook.tenant_id,
        url=webhook.url,
        events=webhook.events,
        active=webhook.active,
        secrets=(*kept, EncryptedSecret(box.encrypt(secret), now)),
        created_at=webhook.created_at,
        updated_at=now,
    )
    return rotated, secret


def with_secret(webhook: Webhook, secret: str) -> dict[str, Any]:
    """The webhook JSON plus its plaintext secret: only for the create and rotate answers."""
    return {**webhook.to_json_dict(), "secret": secret}
