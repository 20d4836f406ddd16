"""The portal's key and notices (producers/portal/app.py, pages.py): pure parts, no server."""

from __future__ import annotations

import logging

import pytest

from plumbing.settings import Settings
from producers.portal.app import portal_key
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
