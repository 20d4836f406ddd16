"""Standard Webhooks signatures (https://www.standardwebhooks.com).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one entry per active
secret, space-separated, so receivers keep verifying while a tenant rotates its secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from schemas.secrets import secret_key_bytes

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``"{message_id}.{timestamp}.{body}"`` under ``secret``."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(secret_key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret in ``secrets``.

    ``message_id`` must be stable across retries (we use the event id) so receivers can
    deduplicate; ``timestamp`` is the attempt's time in Unix seconds.
    """
    if not secrets:
        raise ValueError("secrets: at least one active signing secret is required")
    return {
        WEBHOOK_ID: message_id,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets
        ),
    }
