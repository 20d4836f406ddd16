"""The portal's key and notices (producers/portal/app.py, pages.py): pure parts, no server."""

from __future__ import annotations

import logging

import pytest

from plumbing.settings import Settings
from producers.portal.app import cookie_secure, link_base, portal_key
from producers.portal.pages import notice_text


def test_the_configured_key_signs_and_no_warning_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(portal_key="a-long-random-portal-key")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert portal_key(settings) == b"a-long-random-portal-key"
    assert caplog.records == []


def test_without_a_key_each_process_makes_one_and_says_links_die_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        one, two = portal_key(Settings()), portal_key(Settings())
    assert len(one) == 32 and one != two
    assert "CPEVENTS_PORTAL_KEY" in caplog.text and "restarts" in caplog.text


def test_notices_are_fixed_texts_never_taken_from_the_url() -> None:
    assert notice_text({"notice": "<script>alert(1)</script>"}) is None
    assert (
        notice_text({"notice": "requeued", "count": "3"})
        == "3 dead letters sent back for delivery."
    )
    assert notice_text({"notice": "replayed", "count": "<b>"}) == "0 events queued for redelivery."
    assert notice_text({}) is None


def test_links_use_the_configured_public_url_and_its_https_makes_cookies_secure() -> None:
    configured = Settings(portal_base_url="https://events.example.com/")
    # A Host header a proxy passed on must not decide where a link (and its token) goes.
    assert link_base(configured, "http", "evil.example") == "https://events.example.com"
    assert cookie_secure(configured, request_secure=False)
    development = Settings()
    assert link_base(development, "http", "127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert not cookie_secure(development, request_secure=False)
    assert cookie_secure(development, request_secure=True)
