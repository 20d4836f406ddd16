"""The delivery worker's collector settings apply while a worker runs and are restored after."""

from __future__ import annotations

import gc

from delivery.gctune import YOUNG_THRESHOLD, steady_state_gc


def test_thresholds_and_freeze_are_restored_when_the_last_worker_stops() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with steady_state_gc():
        assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])
        assert gc.get_threshold()[1:] == before[1:]
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the start-up heap is left out of collections
        created_meanwhile = [[n] for n in range(1000)]
        with steady_state_gc():  # a second worker in the same process freezes nothing more
            # (frozen objects that die leave the count: it may only go down)
            assert gc.get_freeze_count() <= frozen
        assert created_meanwhile
        assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])  # one still runs
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_are_restored_when_the_worker_fails() -> None:
    before = gc.get_threshold()
    try:
        with steady_state_gc():
            raise RuntimeError("worker failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
