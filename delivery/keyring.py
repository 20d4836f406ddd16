"""The plaintext signing secrets of webhooks: decrypted once, and answered from memory until
the set of active secrets can change."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from schemas.secrets import SecretBox
from schemas.webhook import Webhook

# Webhooks whose answer is kept; past it the cache starts over (deleted webhooks leave it so).
_KEPT = 100_000


class Keyring:
    """Which secrets sign a webhook's attempts now, in plaintext.

    Asked once per attempt, so the answer is kept per webhook until the first of its active
    secrets expires (the end of a rotation overlap) or the webhook itself changes (another
    object: the view replaces a webhook when a new record of it arrives).
    """

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._plain: dict[str, str] = {}  # ciphertext -> plaintext
        # webhook id -> (the webhook, until when the answer holds (epoch s), the answer)
        self._active: dict[str, tuple[Webhook, float, tuple[str, ...]]] = {}
        # webhook id -> (the webhook, its custom headers in plaintext): one decryption per
        # webhook version (a new record is another object)
        self._headers: dict[str, tuple[Webhook, tuple[tuple[str, str], ...]]] = {}

    def active(self, webhook: Webhook, now: float) -> tuple[str, ...]:
        """The plaintext of ``webhook``'s secrets active at ``now`` (epoch seconds);
        ValueError if one cannot be decrypted."""
        known = self._active.get(webhook.id)
        if known is not None and known[0] is webhook and now < known[1]:
            return known[2]
        secrets = webhook.active_secrets(datetime.fromtimestamp(now, UTC))
        answer = tuple(self._decrypt(secret.ciphertext) for secret in secrets)
        expiries = [s.expires_at.timestamp() for s in secrets if s.expires_at is not None]
        if len(self._active) >= _KEPT:
            self._active.clear()
            self._plain.clear()
        self._active[webhook.id] = (webhook, min(expiries, default=math.inf), answer)
        return answer

    def headers(self, webhook: Webhook) -> tuple[tuple[str, str], ...]:
        """The plaintext (name, value) of ``webhook``'s custom headers; ValueError if one
        cannot be decrypted. Webhooks without any answer at once, with nothing cached."""
        if not webhook.headers:
            return ()
        known = self._headers.get(webhook.id)
        if known is not None and known[0] is webhook:
            return known[1]
        answer = tuple((h.name, self._box.decrypt(h.ciphertext)) for h in webhook.headers)
        if len(self._headers) >= _KEPT:
            self._headers.clear()
        self._headers[webhook.id] = (webhook, answer)
        return answer

    def _decrypt(self, ciphertext: str) -> str:
        plain = self._plain.get(ciphertext)
        if plain is None:
            plain = self._plain[ciphertext] = self._box.decrypt(ciphertext)
        return plain
