"""Standard Webhooks signatures (https://www.standardwebhooks.com).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one entry per active
secret, space-separated, so receivers keep verifying while a tenant rotates its secret.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from collections.abc import Sequence

from schemas.secrets import secret_key_bytes

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``"{message_id}.{timestamp}.{body}"`` under ``secret``."""
    return _sign(secret, _signed_content(message_id, timestamp, body))


def _signed_content(message_id: str, timestamp: int, body: bytes) -> bytes:
    return b"%s.%d.%s" % (message_id.encode(), timestamp, body)


def _sign(secret: str, content: bytes) -> str:
    mac = _keyed(secret).copy()
    mac.update(content)
    return "v1," + binascii.b2a_base64(mac.digest(), newline=False).decode()


@functools.lru_cache(maxsize=1024)
def _keyed(secret: str) -> hmac.HMAC:
    # Keying HMAC (decoding the secret, hashing the padded key) is per secret, not per message.
    return hmac.new(secret_key_bytes(secret), digestmod=hashlib.sha256)


def signature_headers(
    message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret in ``secrets``.

    ``message_id`` must be stable across retries (we use the event id) so receivers can
    deduplicate; ``timestamp`` is the attempt's time in Unix seconds.
    """
    if not secrets:
        raise ValueError("secrets: at least one active signing secret is required")
    content = _signed_content(message_id, timestamp, body)
    if len(secrets) == 1:  # outside a rotation: one signature, and this runs once per attempt
        signatures = _sign(secrets[0], content)
    else:
        signatures = " ".join([_sign(secret, content) for secret in secrets])
    return {
        WEBHOOK_ID: message_id,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: signatures,
    }
