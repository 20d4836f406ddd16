"""`cpevents status`'s summaries of the attempt log: outcomes in the last minute, and which
endpoints have an open breaker."""

from __future__ import annotations

from cpevents.status import Attempt, BreakerInfo, breaker_endpoints, outcome_counts


def attempt(
    at: int, endpoint: str, status: str, code: int = 0, error: str | None = None
) -> Attempt:
    return Attempt(at, "wh_x", endpoint, status, code, error)


def test_outcomes_count_deferrals_apart_from_retries() -> None:
    attempts = [
        attempt(1, "a", "delivered", 200),
        attempt(5, "a", "delivered", 204),
        attempt(6, "b", "retrying", 500, "HTTP 500"),
        attempt(7, "b", "retrying", 0, "deferred: circuit open, next trial in 3.0s"),
        attempt(8, "c", "dead_lettered", 404, "HTTP 404"),
        attempt(9, "d", "disabled", 0, "webhook deleted"),
    ]
    assert outcome_counts(attempts, since_ms=5) == {
        "delivered": 1,
        "retrying": 1,
        "deferred": 1,
        "dead_lettered": 1,
        "disabled": 1,
    }


def test_a_run_of_failures_opens_a_breaker_and_a_success_closes_it() -> None:
    failing = [attempt(t, "http://a:80", "retrying", 503, "HTTP 503") for t in range(1, 6)]
    assert breaker_endpoints(failing, threshold=5) == [BreakerInfo("http://a:80", 5, "HTTP 503", 1)]
    assert breaker_endpoints(failing[:4], threshold=5) == []
    healed = [*failing, attempt(9, "http://a:80", "delivered", 200)]
    assert breaker_endpoints(healed, threshold=5) == []


def test_a_circuit_open_deferral_says_open_whatever_the_count() -> None:
    deferred = attempt(3, "http://b:443", "retrying", 0, "deferred: circuit open, next trial")
    [info] = breaker_endpoints([deferred], threshold=5)
    assert info.endpoint == "http://b:443"


def test_other_deferrals_and_4xx_dead_letters_alone_do_not_open_it() -> None:
    queued = attempt(1, "http://c:80", "retrying", 0, "deferred: 40 tasks queued for this endpoint")
    assert breaker_endpoints([queued], threshold=1) == []
    assert breaker_endpoints([attempt(2, "e", "disabled", 410, "gone")], threshold=1) == []
    assert breaker_endpoints([attempt(2, "e", "dead_lettered", 404, "HTTP 404")], threshold=1) == []
    exhausted = attempt(2, "e", "dead_lettered", 503, "retries exhausted")
    assert len(breaker_endpoints([exhausted], threshold=1)) == 1
