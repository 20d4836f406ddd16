"""Offset tracking, circuit breaker, auto-disable window, retry headers and redrive records."""

from __future__ import annotations

from typing import Any

from delivery.health import BreakerState, CircuitBreakers, FailureWindows
from delivery.lanes import Job
from delivery.offsets import Outputs, PartitionProgress
from delivery.retry_headers import FRESH, RetryState, parse_retry_state, without_retry_headers
from plumbing.kafka.deadletter import REDRIVE_STRIPPED_PREFIXES, redrive_record


def test_commit_stays_below_the_lowest_unfinished() -> None:
    progress = PartitionProgress()
    assert progress.to_commit() is None
    for offset in (10, 11, 12, 13):
        progress.start(offset)
    progress.finish(11)
    progress.finish(13)
    assert progress.committable() == 10
    progress.finish(10)
    assert progress.committable() == 12
    progress.committed = 12
    assert progress.to_commit() is None
    progress.finish(12)
    assert progress.to_commit() == 14
    assert progress.in_flight == 0


def test_breaker_opens_fails_fast_and_half_opens() -> None:
    breakers = CircuitBreakers(threshold=3, cooldown=10)
    for t in range(3):
        assert breakers.allow("e", t)
        assert breakers.record("e", success=False, now=t) is (BreakerState.OPEN if t == 2 else None)
    assert breakers.state("e", 3) is BreakerState.OPEN
    assert not breakers.allow("e", 5)
    assert breakers.next_trial("e", 5) == 12, "refused tasks come back at the trial"
    assert breakers.allow("other", 5)
    assert breakers.state("e", 12.5) is BreakerState.HALF_OPEN
    assert breakers.allow("e", 12.5)  # the one trial
    assert not breakers.allow("e", 12.6)
    assert breakers.next_trial("e", 12.6) == 22.6, "the trial is out: a cooldown later"
    assert breakers.record("e", success=False, now=13) is BreakerState.OPEN
    assert breakers.state("e", 14) is BreakerState.OPEN
    assert breakers.allow("e", 23.5)
    assert breakers.record("e", success=True, now=24) is BreakerState.CLOSED
    assert breakers.state("e", 24) is BreakerState.CLOSED
    assert breakers.next_trial("e", 24) == 24


def test_a_half_open_breaker_lets_its_trials_through_and_backs_off_when_they_fail() -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=10, trials=3, max_cooldown=25)
    breakers.record("e", success=False, now=0)
    assert [breakers.allow("e", 10) for _ in range(4)] == [True, True, True, False]
    # A failed trial reopens it for twice as long; the other trials failing late add nothing.
    assert breakers.record("e", success=False, now=11) is BreakerState.OPEN
    assert breakers.record("e", success=False, now=12) is None
    assert breakers.state("e", 30) is BreakerState.OPEN
    assert breakers.next_trial("e", 12) == 31
    assert breakers.allow("e", 31)
    assert breakers.record("e", success=False, now=31) is BreakerState.OPEN
    assert breakers.next_trial("e", 31) == 56, "doubled again, up to the longest cooldown"
    # Once a trial succeeds it is closed: everything goes again, and the next opening starts
    # from the first cooldown.
    assert breakers.allow("e", 56)
    assert breakers.record("e", success=True, now=56) is BreakerState.CLOSED
    assert all(breakers.allow("e", 56) for _ in range(10))
    assert breakers.record("e", success=False, now=57) is BreakerState.OPEN
    assert breakers.next_trial("e", 57) == 67


def test_success_resets_the_failure_count() -> None:
    breakers = CircuitBreakers(threshold=2, cooldown=10)
    breakers.record("e", success=False, now=0)
    breakers.record("e", success=True, now=1)
    breakers.record("e", success=False, now=2)
    assert breakers.state("e", 2) is BreakerState.CLOSED


def test_failure_window_disables_after_window_without_success() -> None:
    windows = FailureWindows(window=100)
    assert not windows.record("hook", success=False, now=0)
    assert not windows.record("hook", success=False, now=99)
    assert windows.record("hook", success=False, now=100)
    assert windows.record("hook", success=False, now=101), "expired until forgotten"
    windows.forget("hook")
    assert not windows.record("hook", success=False, now=102)
    assert not windows.record("hook2", success=False, now=100)
    assert not windows.record("hook2", success=True, now=150)
    assert not windows.record("hook2", success=False, now=201)
    assert not FailureWindows(window=0).record("h", success=False, now=1e9)


def test_retry_state_round_trip_and_defaults() -> None:
    state = RetryState(3, 1234, "t.deliveries", 2, 77, "HTTP 500: " + "x" * 900, 500)
    parsed = parse_retry_state([("other", b"1"), *state.headers()])
    assert parsed.attempts == 3 and parsed.not_before_ms == 1234
    assert (parsed.original_topic, parsed.original_partition, parsed.original_offset) == (
        "t.deliveries",
        2,
        77,
    )
    assert parsed.last_status == 500 and parsed.last_error is not None
    assert len(parsed.last_error) == 500
    assert parse_retry_state(None) == RetryState()
    assert parse_retry_state([("retry-attempt", b"junk")]).attempts == 0
    assert without_retry_headers([("a", b"1"), *state.headers()]) == [("a", b"1")]


def test_retry_state_from_headers_as_consumed() -> None:
    traceparent = ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    assert parse_retry_state([traceparent]) is FRESH  # a first attempt that is traced
    assert parse_retry_state([]) is FRESH
    assert parse_retry_state([traceparent, ("retry-attempt", b"4")]).attempts == 4
    assert parse_retry_state({"retry-attempt": b"2", "other": b"x"}).attempts == 2
    assert parse_retry_state([("retry-last-error", "HTTP 502"), ("retry-attempt", None)]) == (
        RetryState(last_error="HTTP 502")
    )


def test_redrive_record_strips_bookkeeping_and_keeps_the_rest() -> None:
    headers = [
        ("trace", b"abc"),
        ("retry-attempt", b"4"),
        ("dlt-reason", b"HTTP 500"),
        ("dlt-original-topic", b"p.deliveries.retry.5s"),
    ]
    record = redrive_record(b"k", b"v", headers)
    assert record.topic == "p.deliveries.retry.5s"
    assert (record.key, record.value, record.headers) == (b"k", b"v", [("trace", b"abc")])
    assert redrive_record(b"k", b"v", headers, topic="elsewhere").topic == "elsewhere"
    assert REDRIVE_STRIPPED_PREFIXES == ("dlt-", "retry-")


def test_redrive_without_topic_names_the_header() -> None:
    try:
        redrive_record(None, b"v", [])
    except ValueError as exc:
        assert "dlt-original-topic" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_outputs_finish_only_after_seal_and_every_ack() -> None:
    done: list[str] = []
    outputs = Outputs(lambda: done.append("done"))
    outputs.add()
    outputs.add()
    outputs.acked()
    outputs.acked()  # both acknowledged while the task is still producing: not finished yet
    assert done == []
    outputs.seal()
    assert done == ["done"]


def test_outputs_with_a_refused_record_never_finish() -> None:
    done: list[str] = []
    outputs = Outputs(lambda: done.append("done"))
    outputs.add()
    outputs.add()
    outputs.seal()
    outputs.fail()
    outputs.acked()
    outputs.acked()
    assert done == []
    assert outputs.failed


def test_outputs_take_the_producers_delivery_reports() -> None:
    done: list[str] = []
    refused: list[tuple[object, object]] = []

    def refuse(outputs: Outputs, error: object, record: object) -> bool:
        refused.append((error, record))
        if error != "too large":
            return False
        outputs.add()  # taken over: a replacement goes out instead
        outputs.acked()
        return True

    outputs = Outputs(lambda: done.append("done"), refuse)
    outputs.add()
    outputs.add()
    outputs.seal()
    outputs(None, "first")  # acknowledged
    assert done == []
    outputs("broker down", "second")  # refused: reported, and the task never finishes
    assert refused == [("broker down", "second")]
    assert outputs.failed and done == []
    replaced = Outputs(lambda: done.append("replaced"), refuse)
    replaced.add()
    replaced.seal()
    replaced("too large", "only")  # taken over: finished once the replacement is acknowledged
    assert done == [] and not replaced.failed
    replaced(None, "replacement")
    assert done == ["replaced"]
    done.clear()
    finishing = Outputs(lambda: done.append("done"))
    finishing.add()
    finishing.seal()
    finishing(None, "only")
    assert done == ["done"]


def test_a_jobs_repr_never_shows_its_signing_secrets() -> None:
    message: Any = None  # never read by repr
    job = Job(message, None, FRESH, PartitionProgress(), 0, secrets=("whsec_c2VjcmV0",))
    assert "whsec_" not in repr(job)
