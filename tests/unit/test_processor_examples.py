"""The example processors, run in memory by streams.testing (no broker)."""

from __future__ import annotations

import re
import time
import types
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.event import Event
from schemas.ids import INSTANCE, new_id
from streams.processors import failure_streak, lead_time
from streams.testing import ProcessorTest

NOW = datetime.now(UTC)


def at(event: Event, seconds_ago: float) -> Event:
    return replace(event, timestamp=NOW - timedelta(seconds=seconds_ago))


# -- the README's processor -----------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_readme_processor_works_as_its_test_says() -> None:
    section = README.read_text().split("### Write a stream processor", 1)[1]
    source, test = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[:2]
    module = types.ModuleType("readme_processor")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    async with ProcessorTest(module.install) as harness:
        await harness.send(*[Event.new("deploy.succeeded", "ten_a") for _ in range(10)])
        await harness.send(Event.new("deploy.failed", "ten_a"))  # not counted
        [(key, record)] = harness.outputs("deploy-milestones")
        assert key == "ten_a" and record == {"tenant_id": "ten_a", "deploys": 10}
        assert harness.table("deploys")["ten_a"] == 10
    assert 'ProcessorTest("my_pkg.deploy_milestones")' in test


# -- counts ------------------------------------------------------------------------------------


async def test_counts_per_tenant_and_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPEVENTS_COUNTS_WINDOW_SECONDS", "3600")
    async with ProcessorTest("streams.processors.counts") as harness:
        await harness.send(
            *[Event.new("instance.created", "ten_a") for _ in range(2)],
            Event.new("deploy.failed", "ten_a"),
            Event.new("deploy.failed", "ten_b"),
        )
        await harness.send_record(harness.settings.topics.events("deploy"), b"junk", b"ten_a")
        windowed = harness.table("event-counts").tumbling(3600.0)
        assert windowed["ten_a"].now() == {"instance.created": 2, "deploy.failed": 1}
        assert windowed["ten_b"].now() == {"deploy.failed": 1}
        assert [d.source for d in harness.dead_letters()] == ["streams.processor:event-counts"]


# -- failure streaks ---------------------------------------------------------------------------


def failed(instance: str, seconds_ago: float, tenant: str = "ten_a") -> Event:
    return at(Event.new("health.failed", tenant).with_instance(instance), seconds_ago)


async def test_threshold_failures_within_the_window_alert_once() -> None:
    instance, other = new_id(INSTANCE), new_id(INSTANCE)
    async with ProcessorTest(failure_streak.install) as harness:
        await harness.send(failed(instance, 30), failed(other, 25), failed(instance, 20))
        assert harness.outputs(failure_streak.OUTPUT) == []
        assert harness.table("failure-streaks")["ten_a"] == {
            instance: [pytest.approx((NOW - timedelta(seconds=s)).timestamp()) for s in (30, 20)],
            other: [pytest.approx((NOW - timedelta(seconds=25)).timestamp())],
        }
        last = failed(instance, 10)
        await harness.send(last)
        [(key, alert)] = harness.outputs(failure_streak.OUTPUT)
        assert key == instance
        assert alert == {
            "tenant_id": "ten_a",
            "instance_id": instance,
            "failures": 3,
            "window_seconds": failure_streak.WINDOW_SECONDS,
            "first_failed_at": NOW - timedelta(seconds=30),
            "last_failed_at": NOW - timedelta(seconds=10),
            "last_event_id": last.id,
        }
        # The streak starts over.
        assert instance not in harness.table("failure-streaks")["ten_a"]
        await harness.send(failed(instance, 5))
        assert len(harness.outputs(failure_streak.OUTPUT)) == 1


async def test_failures_outside_the_window_or_before_a_pass_do_not_count() -> None:
    instance = new_id(INSTANCE)
    window = failure_streak.WINDOW_SECONDS
    passed = at(Event.new("health.passed", "ten_a").with_instance(instance), 40)
    async with ProcessorTest(failure_streak.install) as harness:
        await harness.send(failed(instance, window + 100), failed(instance, 60), passed)
        await harness.send(failed(instance, 30), failed(instance, 20))
        assert harness.outputs(failure_streak.OUTPUT) == []
        assert len(harness.table("failure-streaks")["ten_a"][instance]) == 2


# -- deploy lead time --------------------------------------------------------------------------


def deploy(kind: str, deploy_id: str, seconds_ago: float, tenant: str = "ten_a") -> Event:
    event = Event.new(f"deploy.{kind}", tenant).with_payload({"deploy_id": deploy_id})
    return at(event, seconds_ago)


async def test_lead_times_pair_starts_with_their_ends_per_tenant() -> None:
    async with ProcessorTest(lead_time.install) as harness:
        for n, seconds in enumerate([10, 20, 30, 40, 100]):
            await harness.send(deploy("started", f"d{n}", 1000))
            outcome = "failed" if n == 4 else "succeeded"
            await harness.send(deploy(outcome, f"d{n}", 1000 - seconds))
        await harness.send(deploy("started", "d9", 50, tenant="ten_b"))  # still running
        await harness.send(deploy("succeeded", "unknown", 10))  # its start was never seen
        figures = lead_time.summary(harness.table("deploy-lead-times")["ten_a"], time.time())
        assert figures == {
            "window_seconds": lead_time.WINDOW_SECONDS,
            "deploys": 5,
            "failed": 1,
            "p50_seconds": pytest.approx(30),
            "p90_seconds": pytest.approx(100),
        }
        assert harness.table("deploy-lead-times")["ten_b"] == []
        assert set(harness.table("deploy-starts")["ten_b"]) == {"d9"}
        assert harness.table("deploy-starts")["ten_a"] == {}


def test_percentiles_use_the_nearest_rank() -> None:
    assert lead_time.percentile([], 50) is None
    assert lead_time.percentile([5.0], 90) == 5.0
    assert lead_time.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert lead_time.percentile([float(n) for n in range(1, 11)], 90) == 9.0


def test_the_page_escapes_the_tenant() -> None:
    page = lead_time.page({"tenant_id": "<b>", "deploys": 1})
    assert "&lt;b&gt;" in page and "<b>" not in page
