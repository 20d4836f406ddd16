"""The worker's partition bookkeeping without a broker: in flight, held, throttled, committed."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from delivery.partitions import PartitionBook

DELIVERIES = ("t.deliveries", 0)
TIER = ("t.deliveries.retry.5s", 1)


def coords(partitions: list[TopicPartition]) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, tp.offset) for tp in partitions]


def names(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in partitions)


def assigned(concurrency: int = 8) -> PartitionBook:
    book = PartitionBook(concurrency, batch=500)
    assert not book.assign([TopicPartition(*DELIVERIES), TopicPartition(*TIER)])
    return book


def test_commits_stay_below_the_lowest_unsettled_task() -> None:
    book = assigned()
    progress = [book.start(DELIVERIES, offset) for offset in (10, 11, 12)]
    assert all(p is not None for p in progress) and book.in_flight == 3
    first, second, third = progress
    assert first is not None and second is not None and third is not None
    book.done(second, 11)
    assert coords(book.to_commit()) == [("t.deliveries", 0, 10)]
    assert book.to_commit() == [], "nothing moved since"
    book.done(first, 10)
    book.done(third, 12)
    assert coords(book.to_commit()) == [("t.deliveries", 0, 13)]
    assert book.in_flight == 0


def test_records_of_partitions_not_ours_are_not_counted() -> None:
    book = assigned()
    assert book.start(("t.deliveries", 5), 1) is None
    assert book.in_flight == 0


def test_revoking_hands_back_the_offsets_to_commit_and_forgets_the_partition() -> None:
    book = assigned()
    progress = book.start(DELIVERIES, 4)
    assert progress is not None
    book.start(DELIVERIES, 5)
    book.done(progress, 4)
    offsets = book.forget([TopicPartition(*DELIVERIES)])
    assert coords(offsets) == [("t.deliveries", 0, 5)]
    assert book.start(DELIVERIES, 6) is None
    assert not book.owns(DELIVERIES, progress)
    assert book.forget([TopicPartition(*DELIVERIES)]) == []


def test_a_reassigned_partition_starts_afresh() -> None:
    book = assigned()
    before = book.start(DELIVERIES, 4)
    assert before is not None and book.owns(DELIVERIES, before)
    book.assign([TopicPartition(*DELIVERIES)])
    assert not book.owns(DELIVERIES, before), "its tasks belong to the old assignment"


def test_a_held_partition_takes_no_records_until_its_head_is_due() -> None:
    book = assigned()
    assert book.hold(TIER, 1000.0)
    assert not book.hold(TIER, 2000.0), "held already"
    assert not book.hold(("t.other", 0), 1000.0), "not ours"
    assert book.start(TIER, 3) is None, "behind a held head"
    assert book.to_resume(999.0) == ([], [])
    held_due, running = book.to_resume(1000.0)
    assert names(held_due) == [TIER] and running == []
    assert book.start(TIER, 3) is not None


def test_room_is_gone_above_the_low_water_mark_and_back_at_it() -> None:
    book = assigned(concurrency=8)  # low water: 8 - 8 // 4 = 6
    started = [book.start(DELIVERIES, offset) for offset in range(7)]
    assert not book.room.is_set()
    progress = started[0]
    assert progress is not None
    book.done(progress, 0)
    assert book.in_flight == 6 and book.room.is_set()


def test_the_throttle_pauses_everything_until_half_the_limit_is_free() -> None:
    book = assigned(concurrency=4)
    started = [book.start(DELIVERIES, offset) for offset in range(4)]
    assert names(book.throttle()) == [DELIVERIES, TIER] and book.throttled
    assert book.assign([TopicPartition("t.deliveries", 2)]), "a new partition joins the pause"
    book.hold(TIER, 10.0)
    # Due, but the throttle holds it: it resumes with the others.
    assert book.to_resume(10.0) == ([], [])
    for offset, progress in enumerate(started[:2]):
        assert progress is not None
        book.done(progress, offset)
    held_due, running = book.to_resume(11.0)
    assert held_due == [] and not book.throttled
    assert names(running) == [DELIVERIES, ("t.deliveries", 2), TIER]


def test_the_throttle_keeps_held_partitions_paused() -> None:
    book = assigned(concurrency=4)
    book.throttle()
    book.hold(TIER, 50.0)
    held_due, running = book.to_resume(10.0)
    assert held_due == [] and names(running) == [DELIVERIES]
