"""Consumer lag: the pure computation (committed offsets against partition ends) and the
collector's cache, with the Kafka calls replaced by a fake reader."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from plumbing.kafka.lag import (
    READ_BUDGET,
    LagCollector,
    LagReader,
    LagSample,
    Offsets,
    partition_lag,
    topic_lags,
)
from plumbing.settings import Settings


def test_partition_lag_counts_from_the_committed_offset() -> None:
    assert partition_lag(Offsets(committed=40, low=0, high=100)) == 60
    assert partition_lag(Offsets(committed=100, low=0, high=100)) == 0


def test_a_partition_never_committed_counts_its_whole_retained_backlog() -> None:
    assert partition_lag(Offsets(committed=None, low=10, high=25)) == 15
    assert partition_lag(Offsets(committed=-1001, low=0, high=7)) == 7  # OFFSET_INVALID


def test_a_commit_below_the_retained_start_counts_from_the_start() -> None:
    # Retention deleted records the group never read: they cannot be read any more.
    assert partition_lag(Offsets(committed=5, low=50, high=60)) == 10


def test_lag_is_never_negative() -> None:
    assert partition_lag(Offsets(committed=120, low=0, high=100)) == 0


def test_topic_lags_sum_partitions_and_optionally_list_them() -> None:
    partitions = {
        ("a", 0): Offsets(10, 0, 15),
        ("a", 1): Offsets(None, 0, 3),
        ("b", 0): Offsets(7, 0, 7),
    }
    assert topic_lags("g", partitions) == [
        LagSample("g", "a", None, 8),
        LagSample("g", "b", None, 0),
    ]
    detailed = topic_lags("g", partitions, per_partition=True)
    assert detailed == [
        LagSample("g", "a", None, 8),
        LagSample("g", "a", 0, 5),
        LagSample("g", "a", 1, 3),
        LagSample("g", "b", None, 0),
        LagSample("g", "b", 0, 0),
    ]


class FakeReader(LagReader):
    def __init__(self) -> None:  # no AdminClient
        self.reads = 0
        self.high = 10

    def read(self, group: str, topics: Iterable[str] = ()) -> dict[tuple[str, int], Offsets]:
        self.reads += 1
        return {("t", 0): Offsets(4, 0, self.high), ("t", 1): Offsets(None, 0, 2)}


def test_the_collector_exports_per_topic_and_caches_readings() -> None:
    reader = FakeReader()
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    collector = LagCollector(settings, {"grp": ["t"]}, cache=60, reader=reader)
    [family] = list(collector.collect())
    assert family.name == "cpevents_consumer_lag_records"
    assert [(s.labels, s.value) for s in family.samples] == [({"group": "grp", "topic": "t"}, 8)]
    reader.high = 100
    list(collector.collect())
    assert reader.reads == 1  # cached
    uncached = LagCollector(settings, {"grp": ["t"]}, per_partition=True, cache=0, reader=reader)
    topic, partition = uncached.collect()
    assert [s.value for s in topic.samples] == [98]
    assert partition.name == "cpevents_consumer_partition_lag_records"
    assert [(s.labels["partition"], s.value) for s in partition.samples] == [("0", 96), ("1", 2)]


def test_an_unreachable_kafka_gives_no_sample_not_a_failed_scrape() -> None:
    class Broken(FakeReader):
        def read(self, group: str, topics: Iterable[str] = ()) -> dict[tuple[str, int], Offsets]:
            raise RuntimeError("no broker")

    collector = LagCollector(Settings(), {"grp": ["t"]}, cache=0, reader=Broken())
    [family] = list(collector.collect())
    assert family.samples == []


def test_a_scrape_reads_no_more_groups_once_kafka_took_the_read_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]

    class Slow(FakeReader):
        def read(self, group: str, topics: Iterable[str] = ()) -> dict[tuple[str, int], Offsets]:
            self.reads += 1
            now[0] += READ_BUDGET  # each call's timeout, as an unreachable Kafka makes it wait
            raise RuntimeError("timed out")

    reader = Slow()
    groups = {f"grp{n}": ["t"] for n in range(4)}
    collector = LagCollector(Settings(), groups, cache=0, reader=reader, clock=lambda: now[0])
    [family] = list(collector.collect())
    assert family.samples == [] and reader.reads == 1
    assert "consumer lag of 3 groups not read" in caplog.text
    cached = LagCollector(Settings(), groups, cache=5, reader=reader, clock=lambda: now[0])
    list(cached.collect())
    assert reader.reads == 2
    now[0] += 4.9
    list(cached.collect())  # within the cache time from the slow reading's end: reused
    assert reader.reads == 2
    fast = FakeReader()  # a healthy Kafka: every group read in the same scrape
    healthy = LagCollector(Settings(), groups, cache=0, reader=fast, clock=lambda: now[0])
    [family] = list(healthy.collect())
    assert fast.reads == 4 and len(family.samples) == 4
