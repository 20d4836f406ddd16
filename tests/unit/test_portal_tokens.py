"""The portal's link, session and CSRF tokens (producers/portal/tokens.py)."""

from __future__ import annotations

import base64
import json

import pytest

from producers.portal import tokens
from producers.portal.tokens import TokenError

KEY = b"k" * 32
NOW = 1_800_000_000.0


def _link(tenant: str | None = "ten_a", ttl: int = 600) -> str:
    return tokens.sign(KEY, tokens.LINK, tenant, int(NOW) + ttl)


def test_a_signed_link_verifies_with_its_tenant_and_expiry() -> None:
    claims = tokens.verify(KEY, _link(), tokens.LINK, NOW)
    assert claims.tenant_id == "ten_a" and claims.expires_at == int(NOW) + 600
    assert not claims.is_operator
    assert tokens.verify(KEY, _link(None), tokens.LINK, NOW).is_operator


def test_an_expired_link_is_refused() -> None:
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(KEY, _link(ttl=10), tokens.LINK, NOW + 10)


def test_another_key_refuses_the_token() -> None:
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(b"x" * 32, _link(), tokens.LINK, NOW)


def test_a_tampered_payload_is_refused_before_it_is_read() -> None:
    payload, mac = _link().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["t"] = "ten_b"  # another tenant, same MAC
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(KEY, f"{forged}.{mac}", tokens.LINK, NOW)


@pytest.mark.parametrize("token", ["", None, "abc", "a.b.c", "!!.??", "e30.AAAA"])
def test_malformed_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(TokenError):
        tokens.verify(KEY, token, tokens.LINK, NOW)


def test_a_link_is_not_a_session_and_a_session_not_a_link() -> None:
    with pytest.raises(TokenError, match="session"):
        tokens.verify(KEY, _link(), tokens.SESSION, NOW)
    session, _ = tokens.session_from_link(KEY, tokens.verify(KEY, _link(), tokens.LINK, NOW), NOW)
    with pytest.raises(TokenError, match="link"):
        tokens.verify(KEY, session, tokens.LINK, NOW)


def test_a_session_never_outlives_its_link_nor_the_session_cap() -> None:
    short = tokens.verify(KEY, _link(ttl=60), tokens.LINK, NOW)
    token, lifetime = tokens.session_from_link(KEY, short, NOW)
    assert lifetime == 60
    assert tokens.verify(KEY, token, tokens.SESSION, NOW).tenant_id == "ten_a"
    long = tokens.verify(KEY, _link(ttl=tokens.MAX_LINK_SECONDS), tokens.LINK, NOW)
    _, lifetime = tokens.session_from_link(KEY, long, NOW)
    assert lifetime == tokens.SESSION_SECONDS


def test_csrf_is_bound_to_the_session() -> None:
    link = tokens.verify(KEY, _link(), tokens.LINK, NOW)
    one = tokens.verify(KEY, tokens.session_from_link(KEY, link, NOW)[0], tokens.SESSION, NOW)
    two = tokens.verify(KEY, tokens.session_from_link(KEY, link, NOW)[0], tokens.SESSION, NOW)
    csrf = tokens.csrf_token(KEY, one)
    assert tokens.check_csrf(KEY, one, csrf)
    assert not tokens.check_csrf(KEY, two, csrf)  # another session's token
    assert not tokens.check_csrf(KEY, one, None)
    assert not tokens.check_csrf(KEY, one, "")
    assert not tokens.check_csrf(b"y" * 32, one, csrf)
