"""The commit offset Faust computes must never pass an unacked message (see streams/commits.py)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from plumbing.settings import Settings
from streams.app import WorkerOptions, create_app
from streams.commits import CommitSafeConsumer

PARTITION = TP("t.events.instance", 0)


def _consumer(cls: type, committed: int | None, acked: list[int]) -> faust_aiokafka.Consumer:
    consumer = object.__new__(cls)  # only the offset bookkeeping is exercised
    consumer._committed_offset = defaultdict(lambda: None, {PARTITION: committed})
    consumer._acked = defaultdict(list, {PARTITION: list(acked)})
    consumer._acked_index = defaultdict(set, {PARTITION: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    return consumer


@pytest.mark.parametrize(
    ("committed", "acked", "expected"),
    [
        (10, [11, 12], None),  # 10 not processed yet: nothing may be committed
        (0, [1, 2], None),  # the same at the start of a partition
        (10, [10, 11, 12], 13),
        (0, [0, 1], 2),
        (10, [10, 11, 13, 14], 12),  # a gap after the head stops the commit there
        (None, [5, 6], 7),  # nothing committed yet: the first acked run
    ],
)
def test_commit_offset_stops_at_the_first_unacked_message(
    committed: int | None, acked: list[int], expected: int | None
) -> None:
    consumer = _consumer(CommitSafeConsumer, committed, acked)
    assert consumer._new_offset(PARTITION) == expected
    assert consumer._committed_offset[PARTITION] == committed  # restored


def test_upstream_still_commits_past_an_unacked_message() -> None:
    """Documents why the override exists; when this fails, faust-streaming fixed it upstream
    and streams/commits.py can go."""
    assert _consumer(faust_aiokafka.Consumer, 10, [11, 12])._new_offset(PARTITION) == 13


def test_the_router_app_uses_the_commit_safe_consumer(tmp_path: Path) -> None:
    app = create_app(Settings(bootstrap_servers="127.0.0.1:1"), WorkerOptions(datadir=tmp_path))
    assert app.transport.Consumer is CommitSafeConsumer
