"""Classification of every status class, errors, and Retry-After parsing with its cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from delivery.outcome import Verdict, classify_error, classify_status, parse_retry_after


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify_status(status).verdict is Verdict.DELIVERED


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert classify_status(status).verdict is Verdict.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422, 451, 499])
def test_other_4xx_dead_letter(status: int) -> None:
    outcome = classify_status(status)
    assert outcome.verdict is Verdict.DEAD_LETTER
    assert str(status) in outcome.reason


def test_410_disables() -> None:
    assert classify_status(410).verdict is Verdict.GONE


@pytest.mark.parametrize("status", [100, 301, 302, 307, 308, 600])
def test_redirects_and_oddities_dead_letter(status: int) -> None:
    assert classify_status(status).verdict is Verdict.DEAD_LETTER


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        ConnectionRefusedError(111, "refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("cut"),
    ],
)
def test_errors_retry(error: BaseException) -> None:
    outcome = classify_error(error)
    assert outcome.verdict is Verdict.RETRY
    assert type(error).__name__ in outcome.reason


def test_retry_after_seconds_and_cap() -> None:
    assert parse_retry_after("120", cap=3600) == 120
    assert parse_retry_after(" 7 ", cap=3600) == 7
    assert parse_retry_after("999999", cap=3600) == 3600
    assert parse_retry_after("0", cap=3600) == 0
    assert classify_status(429, "30", cap=10).retry_after == 10
    assert classify_status(503, "5").retry_after == 5


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, cap=3600, now=now) == 90
    assert parse_retry_after(later, cap=60, now=now) == 60
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, cap=3600, now=now) == 0
    assert parse_retry_after("Wed, 01 Jan 2025 12:01:00 GMT", cap=3600, now=now) == 60


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2025"])
def test_bad_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, cap=3600) is None


def test_retry_after_ignored_on_non_retry_status() -> None:
    assert classify_status(400, "10").retry_after is None
