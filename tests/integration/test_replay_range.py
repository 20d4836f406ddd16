"""Replay on a real broker: exact time ranges, filters, timestamp order across partitions,
byte-identical reruns, and a corrupt record reported with its coordinates and skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from plumbing.kafka.topic_admin import ensure_topics
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.event import Event
from streams.audit import (
    RangeReader,
    RecordFilter,
    ReplayRequest,
    ReplayStats,
    TimeRange,
    entries,
)
from streams.audit.reader import RawRecord
from streams.audit.render import json_line
from tests.conftest import make_settings
from tests.fixtures_replay import DataSet, invoke_replay, produce_dataset, rfc3339_ms

SECOND = 1000


@pytest.fixture(scope="module")
def ds(kafka_bootstrap: str, registry_url: str) -> DataSet:
    """One data set for the whole module: every test here only reads it."""
    settings = make_settings(kafka_bootstrap, schema_registry_url=registry_url)
    ensure_topics(settings)
    return produce_dataset(settings, serde_for(settings))


def replay(
    ds: DataSet, request: ReplayRequest, buffer_per_partition: int = 1000
) -> tuple[list[Event], list[str], ReplayStats]:
    """The events a replay yields, and the coordinates of the records it skipped."""
    skipped: list[str] = []
    stats = ReplayStats()

    def on_undecodable(record: RawRecord, reason: str) -> None:
        assert reason
        skipped.append(record.coordinates)

    with RangeReader(
        ds.settings,
        request.topics(ds.settings),
        request.time_range,
        buffer_per_partition=buffer_per_partition,
    ) as reader:
        events = [
            entry
            for _, entry in entries(request, reader.records(), ds.serde, on_undecodable, stats)
        ]
    assert all(isinstance(e, Event) for e in events)
    return events, skipped, stats  # type: ignore[return-value]


def corrupt(ds: DataSet) -> str:
    topic, partition, offset = ds.corrupt_at
    return f"{topic}/{partition}@{offset}"


def test_whole_range_in_timestamp_order_with_the_corrupt_record_skipped(ds: DataSet) -> None:
    events, skipped, stats = replay(ds, ReplayRequest())
    assert [e.id for e in events] == [e.id for e in ds.expected()]
    assert skipped == [corrupt(ds)]
    assert (stats.read, stats.matched, stats.undecodable) == (49, 48, 1)
    timestamps = [e.timestamp for e in events]
    assert timestamps == sorted(timestamps)


def test_tiny_buffers_give_the_same_order(ds: DataSet) -> None:
    """Back-pressure (pausing full partitions) must not change what is emitted."""
    events, _, _ = replay(ds, ReplayRequest(), buffer_per_partition=1)
    assert [e.id for e in events] == [e.id for e in ds.expected()]


@pytest.mark.parametrize(
    ("since_s", "until_s"),
    [(0, 10), (5, 6), (6, 7), (10, 11), (19, 21), (30, 100), (-100, 0), (47, 48), (48, 60)],
)
def test_time_ranges_are_exact(ds: DataSet, since_s: int, until_s: int) -> None:
    since_ms, until_ms = ds.base_ms + since_s * SECOND, ds.base_ms + until_s * SECOND
    events, skipped, _ = replay(ds, ReplayRequest(time_range=TimeRange(since_ms, until_ms)))
    assert [e.id for e in events] == [e.id for e in ds.expected(since_ms, until_ms)]
    assert skipped == ([corrupt(ds)] if since_ms <= ds.base_ms + 10_500 < until_ms else [])


def test_filters(ds: DataSet) -> None:
    def ids(selection: RecordFilter, subsystems: tuple[str, ...] = ()) -> list[str]:
        events, _, _ = replay(ds, ReplayRequest(selection=selection, subsystems=subsystems))
        return [e.id for e in events]

    everything = ds.expected()
    assert ids(RecordFilter.of(tenants=["ten_b"])) == [
        e.id for e in everything if e.tenant_id == "ten_b"
    ]
    assert ids(RecordFilter.of(types=["instance.*"])) == [
        e.id for e in everything if e.type.startswith("instance.")
    ]
    assert ids(RecordFilter.of(types=["deploy.started", "*.failed"])) == [
        e.id for e in everything if e.type in ("deploy.started", "health.failed")
    ]
    assert ids(RecordFilter.of(types=["*"])) == [e.id for e in everything]
    assert ids(RecordFilter.of(instances=[ds.instances[1]], tenants=["ten_a", "ten_c"])) == [
        e.id
        for e in everything
        if e.instance_id == ds.instances[1] and e.tenant_id in ("ten_a", "ten_c")
    ]
    assert ids(RecordFilter(), subsystems=("deploy", "network")) == [
        e.id for e in everything if e.subsystem in ("deploy", "network")
    ]
    assert ids(RecordFilter.of(tenants=["ten_nobody"])) == []


def test_cli_json_lines_are_byte_identical_across_runs(ds: DataSet) -> None:
    since, until = rfc3339_ms(ds.base_ms + 3 * SECOND), rfc3339_ms(ds.base_ms + 40 * SECOND)
    first = invoke_replay(ds.settings, "--since", since, "--until", until)
    second = invoke_replay(ds.settings, "--since", since, "--until", until)
    assert first.exit_code == 0, first.stderr
    assert first.stdout_bytes == second.stdout_bytes
    expected = ds.expected(ds.base_ms + 3 * SECOND, ds.base_ms + 40 * SECOND)
    assert first.stdout_bytes == b"".join(e.to_json().encode() + b"\n" for e in expected)
    assert f"undecodable record {corrupt(ds)} skipped" in first.stderr
    assert f"{len(expected)} of {len(expected) + 1} records matched" in first.stderr


def test_cli_filters_and_relative_since(ds: DataSet) -> None:
    result = invoke_replay(
        ds.settings, "--since", "2h", "--tenant", "ten_c", "--type", "instance.*"
    )
    assert result.exit_code == 0, result.stderr
    expected = [
        e for e in ds.expected() if e.tenant_id == "ten_c" and e.type.startswith("instance.")
    ]
    assert result.stdout == "".join(json_line(e) + "\n" for e in expected)


def test_cli_table(ds: DataSet) -> None:
    result = invoke_replay(ds.settings, "--format", "table", "--subsystem", "network")
    assert result.exit_code == 0, result.stderr
    network = [e for e in ds.expected() if e.subsystem == "network"]
    assert network and all(e.id[:20] in result.stdout for e in network)


def test_cli_rejects_bad_options(ds: DataSet) -> None:
    for args, field in [
        (("--since", "yesterday"), "--since"),
        (("--type", "instanse.*"), "--type"),
        (("--since", "1h", "--until", "2h"), "--until"),
        (("--subsystem", "billing"), "--subsystem"),
        (("--follow", "--until", "1h"), "--follow"),
    ]:
        result = invoke_replay(ds.settings, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert f"invalid option {field}" in result.stderr


def test_cli_subprocess_is_byte_identical(cli_env: dict[str, str], settings: Settings) -> None:
    """``python -m cpevents replay`` twice over the same range, as separate processes."""
    data = produce_dataset(settings, serde_for(settings), count=12)
    since = rfc3339_ms(data.base_ms + 2 * SECOND)
    runs = [
        subprocess.run(
            [sys.executable, "-m", "cpevents", "replay", "--since", since, "--until", "now"],
            env=cli_env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        for _ in range(2)
    ]
    first, second = runs
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    expected = data.expected(data.base_ms + 2 * SECOND)
    assert first.stdout == b"".join(e.to_json().encode() + b"\n" for e in expected)
    assert f"undecodable record {corrupt(data)} skipped".encode() in first.stderr
    assert b"\x1b[" not in first.stderr  # no progress bar when stderr is not a terminal
