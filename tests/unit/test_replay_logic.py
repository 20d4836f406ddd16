"""Pure parts of replay: time ranges, filters, the bounded merge, rendering, redelivery rules."""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plumbing.kafka import deadletter
from schemas.delivery_records import DeliveryTask
from schemas.errors import ContractError
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from schemas.serde import Serde
from schemas.webhook import Webhook
from streams.audit import (
    BoundedMerge,
    RecordFilter,
    ReplayRequest,
    ReplayStats,
    TimeRange,
    count_matches,
    parse_range,
)
from streams.audit.filters import expand_type_patterns
from streams.audit.pipeline import select_dead_letters, select_events
from streams.audit.reader import RawRecord
from streams.audit.redeliver import RedeliveryRefused, redelivery_filter
from streams.audit.render import json_line, table_row
from streams.audit.timerange import parse_duration_ms, parse_instant_ms

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# -- time ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30_000),
        ("15m", NOW - 900_000),
        ("2h", NOW - 7_200_000),
        ("1d", NOW - 86_400_000),
        ("250ms", NOW - 250),
        ("now", NOW),
        ("2026-01-01T00:00:00Z", NOW),
        ("2025-12-31T23:00:00.123456789Z", NOW - 3_600_000 + 123),
        ("2026-01-01T01:00:00+01:00", NOW),
    ],
)
def test_instants(text: str, expected: int) -> None:
    assert parse_instant_ms(text, "since", NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-5m", "2026-01-01", "5x", ""])
def test_bad_instants_name_the_option(text: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_instant_ms(text, "since", NOW)
    assert caught.value.field == "since"


def test_ranges() -> None:
    window = parse_range("2h", "1h", NOW)
    assert (window.since_ms, window.until_ms) == (NOW - 7_200_000, NOW - 3_600_000)
    assert window.contains(NOW - 7_200_000) and not window.contains(NOW - 3_600_000)
    assert parse_range(None, None, NOW) == TimeRange()
    assert TimeRange().contains(0)
    with pytest.raises(ContractError, match="until"):
        parse_range("1h", "2h", NOW)
    assert parse_duration_ms("3w", "x") == 3 * 604_800_000


# -- filters ---------------------------------------------------------------------------------


def test_type_patterns() -> None:
    assert expand_type_patterns(["instance.*"]) == {
        str(t) for t in EventType if t.startswith("instance.")
    }
    assert expand_type_patterns(["*"]) == {str(t) for t in EventType}
    assert expand_type_patterns(["*.failed", "cert.expiring"]) == {
        "instance.failed",
        "deploy.failed",
        "health.failed",
        "cert.expiring",
    }
    with pytest.raises(ContractError, match="instanse"):
        expand_type_patterns(["instanse.*"])
    assert expand_type_patterns(["nothing.*"], strict=False) == frozenset()


def event(kind: EventType = EventType.INSTANCE_CREATED, tenant: str = "ten_a") -> Event:
    return Event.new(kind, tenant)


def test_record_filter() -> None:
    instance = "inst_01h455vb4pex5vsknk084sn02q"
    keep = RecordFilter.of(tenants=["ten_a"], types=["deploy.*"], instances=[instance])
    assert keep.matches(event(EventType.DEPLOY_FAILED).with_instance(instance))
    assert not keep.matches(event(EventType.DEPLOY_FAILED))
    assert not keep.matches(event(EventType.INSTANCE_CREATED).with_instance(instance))
    assert not keep.matches(event(EventType.DEPLOY_FAILED, "ten_b").with_instance(instance))
    assert keep.key_may_match(b"ten_a") and not keep.key_may_match(b"ten_b")
    assert RecordFilter().key_may_match(None) and RecordFilter().matches(event())
    assert keep.subsystems() == ["deploy"]
    assert RecordFilter().subsystems(["network", "admin"]) == ["network", "admin"]
    assert RecordFilter.of(types=["deploy.*"]).subsystems(["network"]) == []
    with pytest.raises(ContractError, match="subsystem"):
        RecordFilter().subsystems(["billing"])
    hook = new_id(WEBHOOK)
    task = DeliveryTask.for_event(event(EventType.DEPLOY_FAILED), hook, "https://x.example")
    assert RecordFilter.of(webhooks=[hook], types=["*.failed"]).matches_task(task)
    assert not RecordFilter.of(webhooks=[new_id(WEBHOOK)]).matches_task(task)


# -- the bounded merge -------------------------------------------------------------------------


def test_merge_waits_for_starving_sources_and_orders_ties() -> None:
    merge: BoundedMerge[str, tuple[int, str]] = BoundedMerge(["a", "b"], lambda r: r, capacity=2)
    merge.push("a", (1, "a"))
    assert list(merge.pop_ready()) == []  # b may still hold something earlier
    merge.push("b", (1, "b"))
    merge.push("b", (3, "b"))
    assert merge.is_full("b") and not merge.is_full("a")
    assert list(merge.pop_ready()) == [(1, "a")]  # a is now empty: wait for it again
    assert merge.starving == {"a"}
    merge.finish("a")
    assert list(merge.pop_ready()) == [(1, "b"), (3, "b")]
    assert not merge.done
    merge.finish("b")
    assert merge.done and merge.buffered() == 0


def test_merge_idle_sources_do_not_block_a_follow() -> None:
    merge: BoundedMerge[str, int] = BoundedMerge(["a", "b"], lambda r: r)
    merge.push("a", 5)
    merge.set_idle("b")
    assert list(merge.pop_ready()) == [5]
    merge.push("b", 7)  # b produces again: it counts until it is idle again
    merge.push("a", 9)
    assert list(merge.pop_ready()) == [7]


Record = tuple[int, int, int]  # (timestamp, partition, offset)


def merged(
    streams: dict[int, list[Record]],
    capacity: int,
    seed: int,
    sort_key: Callable[[Record], object] | None,
) -> list[Record]:
    """What the merge emits when the sources arrive in a random order and batch sizes."""
    merge: BoundedMerge[int, Record] = BoundedMerge(streams, sort_key, capacity)
    cursors = dict.fromkeys(streams, 0)
    out: list[Record] = []
    rng = random.Random(seed)
    while not merge.done:
        # A source is fetched only while its buffer has room (what the reader's pause does).
        ready = [p for p in streams if p in merge.live and not merge.is_full(p)]
        for source in rng.sample(ready, rng.randint(0, len(ready))) if ready else []:
            if cursors[source] < len(streams[source]):
                merge.push(source, streams[source][cursors[source]])
                cursors[source] += 1
            else:
                merge.finish(source)
        out.extend(merge.pop_ready())
        assert merge.buffered() <= capacity * len(streams)
    return out


partition_timestamps = st.lists(st.lists(st.integers(0, 50), max_size=30), min_size=1, max_size=6)


@given(partition_timestamps, st.integers(1, 4), st.integers(0, 2**32), st.booleans())
def test_merge_equals_a_sort_whatever_the_arrival_order(
    partitions: list[list[int]], capacity: int, seed: int, with_key: bool
) -> None:
    streams = {
        p: sorted((ts, p, i) for i, ts in enumerate(values)) for p, values in enumerate(partitions)
    }
    key = (lambda r: r) if with_key else None
    assert merged(streams, capacity, seed, key) == sorted(r for s in streams.values() for r in s)


@given(partition_timestamps, st.integers(1, 4), st.integers(0, 2**32), st.booleans())
def test_merge_is_the_classic_k_way_merge_even_when_timestamps_go_back(
    partitions: list[list[int]], capacity: int, seed: int, with_key: bool
) -> None:
    # Partitions in offset order whose timestamps may go back: the output is still exactly the
    # classic "smallest head first" merge, whatever the arrival order (so replays reproduce).
    streams = {p: [(t, p, i) for i, t in enumerate(values)] for p, values in enumerate(partitions)}
    key = (lambda r: r) if with_key else None
    assert merged(streams, capacity, seed, key) == list(heapq.merge(*streams.values()))


# -- decoding, skipping, rendering ---------------------------------------------------------------


def raw(value: bytes | None, offset: int, key: bytes | None = b"ten_a", headers=()) -> RawRecord:  # type: ignore[no-untyped-def]
    return RawRecord(1000 + offset, "t.events.instance", 0, offset, key, value, tuple(headers))


def test_undecodable_records_are_reported_and_skipped() -> None:
    serde = Serde("mock://unit-replay")
    good = event()
    records = [
        raw(b"\x01junk", 0),
        raw(serde.events.encode(good, "t.events.instance"), 1),
        raw(None, 2),
        raw(serde.events.encode(event(tenant="ten_b"), "t.events.instance"), 3, key=b"ten_b"),
    ]
    skipped: list[tuple[str, str]] = []
    stats = ReplayStats()
    kept = list(
        select_events(
            records,
            serde,
            RecordFilter.of(tenants=["ten_a"]),
            lambda r, why: skipped.append((r.coordinates, why)),
            stats,
        )
    )
    assert [e for _, e in kept] == [good]
    assert [c for c, _ in skipped] == ["t.events.instance/0@0", "t.events.instance/0@2"]
    assert "wire format" in skipped[0][1] and "empty value" in skipped[1][1]
    assert (stats.read, stats.matched, stats.undecodable) == (4, 1, 2)


def test_count_matches_counts_what_a_replay_keeps() -> None:
    # The number a redelivery confirmation shows: matching events only, undecodable ones skipped.
    serde = Serde("mock://unit-replay-count")
    records = [
        raw(b"\x01junk", 0),
        raw(serde.events.encode(event(), "t.events.instance"), 1),
        raw(serde.events.encode(event(), "t.events.instance"), 2),
        raw(serde.events.encode(event(tenant="ten_b"), "t.events.instance"), 3, key=b"ten_b"),
    ]
    only_a = ReplayRequest(selection=RecordFilter.of(tenants=["ten_a"]))
    assert count_matches(only_a, records, serde) == 2
    assert count_matches(ReplayRequest(), records, serde) == 3


def test_dead_letter_rendering() -> None:
    serde = Serde("mock://unit-replay-dlt")
    task = DeliveryTask.for_event(
        event().with_payload({"b": 1, "a": "<x>"}), new_id(WEBHOOK), "https://x.example/h"
    )
    headers = [
        (deadletter.REASON, b"HTTP 410"),
        (deadletter.ORIGINAL_TOPIC, b"t.deliveries"),
        (deadletter.ORIGINAL_PARTITION, b"2"),
        (deadletter.ORIGINAL_OFFSET, b"17"),
        (deadletter.FAILED_AT, b"1767225600000"),
        (deadletter.SOURCE, b"delivery"),
    ]
    record = raw(serde.tasks.encode(task, "t.deliveries"), 0, headers=headers)
    [(_, entry)] = list(select_dead_letters([record], serde, RecordFilter(), print, ReplayStats()))
    line = json_line(entry)
    assert line == json_line(entry)  # stable
    data = json.loads(line)
    assert list(data) == [
        "reason",
        "source",
        "original_topic",
        "original_partition",
        "original_offset",
        "failed_at_ms",
        "task",
    ]
    assert data["task"]["event"] == json.loads(task.event.to_json())
    assert '"payload":{"a":"\\u003cx\\u003e","b":1}' in line  # Go's encoding of the payload
    assert table_row(entry, 0)[:3] == ("2026-01-01T00:00:00Z", "HTTP 410", "delivery")
    assert table_row(event().with_payload({"n": 1}), 0)[5] == '{"n":1}'


# -- redelivery rules ---------------------------------------------------------------------------


def hook(**changes: object) -> Webhook:
    webhook = Webhook(
        id=new_id(WEBHOOK), tenant_id="ten_a", url="https://x.example", events=("instance.*",)
    )
    return webhook.updated(**changes) if changes else webhook


def test_redelivery_is_narrowed_to_the_webhook() -> None:
    webhook = hook()
    narrowed = redelivery_filter(RecordFilter(), webhook, webhook.id)
    assert narrowed.tenants == {"ten_a"}
    assert narrowed.types == {str(t) for t in EventType if t.startswith("instance.")}
    both = redelivery_filter(RecordFilter.of(types=["*.failed"]), webhook, webhook.id)
    assert both.types == {"instance.failed"}
    everything = hook(events=())
    assert redelivery_filter(RecordFilter(), everything, everything.id).types == frozenset()


@pytest.mark.parametrize(
    ("selection", "webhook", "field", "reason"),
    [
        (RecordFilter(), None, "webhook", "does not exist"),
        (RecordFilter(), hook(active=False), "webhook", "inactive"),
        (RecordFilter.of(tenants=["ten_a", "ten_b"]), hook(), "tenant", "another tenant"),
        (RecordFilter.of(types=["deploy.*"]), hook(), "type", "none of these types"),
    ],
)
def test_redelivery_refusals(
    selection: RecordFilter, webhook: Webhook | None, field: str, reason: str
) -> None:
    with pytest.raises(RedeliveryRefused) as caught:
        redelivery_filter(selection, webhook, "hook_x")
    assert caught.value.field == field and reason in caught.value.reason
