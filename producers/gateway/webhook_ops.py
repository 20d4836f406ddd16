"""Webhook lifecycle rules (create, update, rotate a secret) as pure functions.

Every function returns the next version of the record (``version`` + 1; a new webhook is
version 1), so the gateway's ETag changes with every write.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from producers.gateway.validation import WebhookCreate
from schemas import ids
from schemas.secrets import SecretBox, generate_secret
from schemas.webhook import EncryptedHeader, EncryptedSecret, Webhook

log = logging.getLogger(__name__)


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
        version=1,
        filter_json=request.filter_json,
        headers=encrypted_headers(request.headers, box),
        rate_limit=request.rate_limit,
    )
    return webhook, secret


def encrypted_headers(
    pairs: tuple[tuple[str, str], ...], box: SecretBox
) -> tuple[EncryptedHeader, ...]:
    """Custom headers as stored: each value encrypted like a signing secret."""
    return tuple(EncryptedHeader(name, box.encrypt(value)) for name, value in pairs)


def update_webhook(
    webhook: Webhook, changes: dict[str, Any], now: datetime, box: SecretBox | None = None
) -> Webhook:
    """``webhook`` with ``changes`` (url, events, active, filter_json, headers, rate_limit)
    applied.

    ``replace`` carries every other field, so fields added later survive an update. New
    custom headers (plaintext in ``changes``) are encrypted with ``box``.
    """
    allowed = {"url", "events", "active", "filter_json", "rate_limit"}
    applied = {k: v for k, v in changes.items() if k in allowed}
    if "headers" in changes:
        if box is None:
            raise ValueError("box: needed to encrypt custom headers")
        applied["headers"] = encrypted_headers(changes["headers"], box)
    return replace(webhook, **applied, updated_at=now, version=webhook.version + 1)


def rotate_secret(
    webhook: Webhook,
    box: SecretBox,
    overlap: timedelta,
    now: datetime,
    max_active: int = 3,
) -> tuple[Webhook, str]:
    """A new current secret; the secrets active now stay valid until ``now + overlap``.

    Secrets that already expired are dropped, so rotating often does not grow the record. At
    most ``max_active`` secrets stay active: rotating again within the overlap ends the
    oldest overlaps at once (those secrets are dropped), so a receiver never has to try more
    than ``max_active`` signatures and the record stays small.
    """
    if max_active < 1:
        raise ValueError("max_active: must be >= 1")
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
    # Oldest first (rotation appends): keep the newest ones, leaving room for the new secret.
    kept = kept[max(0, len(kept) - (max_active - 1)) :]
    # replace: every other field (filter, and those added later) is carried over.
    rotated = replace(
        webhook,
        secrets=(*kept, EncryptedSecret(box.encrypt(secret), now)),
        updated_at=now,
        version=webhook.version + 1,
    )
    return rotated, secret


def reencrypted(webhook: Webhook, box: SecretBox) -> Webhook:
    """``webhook`` with its secrets re-encrypted under the box's first key (key rotation: every
    write moves the record to the new key). With a single key there is nothing to move.

    A secret no configured key opens is kept as it is (logged without its value): dropping
    it would break the endpoint's verification, and the write itself must not fail on it.
    """
    if box.key_count < 2:
        return webhook
    secrets = tuple(
        _rotated(box, secret, f"webhook {webhook.id}: a secret created at {secret.created_at}")
        for secret in webhook.secrets
    )
    headers = tuple(
        _rotated(box, header, f"webhook {webhook.id}: custom header {header.name}")
        for header in webhook.headers
    )
    return replace(webhook, secrets=secrets, headers=headers)


Sealed = TypeVar("Sealed", EncryptedSecret, EncryptedHeader)


def _rotated(box: SecretBox, item: Sealed, what: str) -> Sealed:
    """``item`` re-encrypted under the box's first key, or as it is (logged, never its value)
    when no configured key opens it."""
    try:
        return replace(item, ciphertext=box.rotate(item.ciphertext))
    except ValueError:
        log.warning("%s opens with no configured key; kept as is", what)
        return item


def with_secret(webhook: Webhook, secret: str) -> dict[str, Any]:
    """The webhook JSON plus its plaintext secret: only for the create and rotate answers."""
    return {**webhook.to_json_dict(), "secret": secret}
