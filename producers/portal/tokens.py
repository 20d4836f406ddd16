"""Portal link tokens, session tokens and CSRF tokens: pure functions over an HMAC-SHA256 key.

A token is ``<payload>.<mac>``, both URL-safe base64 without padding; the payload is compact
JSON ``{"k": kind, "t": tenant or null, "exp": unix seconds, "n": nonce}``. The kind is part of
the signed payload, so a link token is never accepted as a session cookie or the reverse.
A tenant of ``None`` is an operator (admin) token that sees every tenant.

CSRF is session-bound: the token is an HMAC of the session's nonce, so it needs no state on the
server and dies with the session; a request from another site cannot read it (the page that
shows it is same-origin and the session cookie is HttpOnly + SameSite=Strict anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Literal

Kind = Literal["link", "session"]

LINK: Kind = "link"
SESSION: Kind = "session"
# A link is meant to be clicked soon; a session lives at most a working day.
MAX_LINK_SECONDS = 7 * 24 * 3600
SESSION_SECONDS = 8 * 3600


class TokenError(ValueError):
    """A token that is malformed, tampered with, of the wrong kind, or expired."""


@dataclass(frozen=True)
class Claims:
    """What a valid token grants: ``tenant_id`` (None: every tenant) until ``expires_at``."""

    kind: Kind
    tenant_id: str | None
    expires_at: int
    nonce: str

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sign(key: bytes, kind: Kind, tenant_id: str | None, expires_at: int) -> str:
    """A token of ``kind`` for ``tenant_id`` (None: operator) valid until ``expires_at``."""
    payload = json.dumps(
        {"k": kind, "t": tenant_id, "exp": int(expires_at), "n": secrets.token_urlsafe(12)},
        separators=(",", ":"),
    ).encode()
    encoded = _b64(payload)
    return f"{encoded}.{_b64(_mac(key, encoded.encode()))}"


def verify(key: bytes, token: str | None, kind: Kind, now: float) -> Claims:
    """The claims of ``token`` if it is a valid, unexpired token of ``kind``; else TokenError.

    The MAC is checked (in constant time) before the payload is parsed, so a forged payload is
    never interpreted.
    """
    if not token or token.count(".") != 1:
        raise TokenError("malformed")
    encoded, mac = token.split(".")
    if not hmac.compare_digest(_unb64(mac), _mac(key, encoded.encode())):
        raise TokenError("bad signature")
    try:
        payload = json.loads(_unb64(encoded))
        claims = Claims(payload["k"], payload["t"], int(payload["exp"]), str(payload["n"]))
    except (ValueError, KeyError, TypeError):
        raise TokenError("malformed") from None
    if claims.kind != kind:
        raise TokenError(f"not a {kind} token")
    if claims.tenant_id is not None and not isinstance(claims.tenant_id, str):
        raise TokenError("malformed")
    if claims.expires_at <= now:
        raise TokenError("expired")
    return claims


def session_from_link(key: bytes, link: Claims, now: float) -> tuple[str, int]:
    """A session token for the holder of ``link`` and its lifetime in seconds.

    The session ends with the link's expiry or after SESSION_SECONDS, whichever comes first,
    so an expiring link cannot be stretched into a longer session.
    """
    expires_at = min(link.expires_at, int(now) + SESSION_SECONDS)
    return sign(key, SESSION, link.tenant_id, expires_at), max(0, expires_at - int(now))


def csrf_token(key: bytes, session: Claims) -> str:
    """The CSRF token of ``session`` (the same for the session's whole life)."""
    return _b64(_mac(key, f"csrf|{session.nonce}".encode()))


def check_csrf(key: bytes, session: Claims, presented: str | None) -> bool:
    """Whether ``presented`` is ``session``'s CSRF token (constant-time comparison)."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), csrf_token(key, session).encode())
