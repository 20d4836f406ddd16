"""registry.election: resigning the writer role, alone and while the election thread is taking
the role anew (no broker: the group callbacks are driven directly)."""

from __future__ import annotations

import threading

from confluent_kafka import TopicPartition

from plumbing.settings import Settings
from registry.election import WriterElection


def election(on_elected: object = None) -> tuple[WriterElection, list[str]]:
    calls: list[str] = []

    def elected() -> None:
        calls.append("elected")
        if callable(on_elected):
            on_elected()

    made = WriterElection(
        Settings(), "_schemas", "registry", elected, lambda: calls.append("deposed")
    )
    made._assigned_cb(None, [TopicPartition("_schemas", 0)])  # type: ignore[arg-type]
    return made, calls


def test_resigning_gives_the_role_up() -> None:
    made, calls = election()
    made._elect()
    assert made.elected
    made.resign()
    assert not made.elected and calls == ["elected", "deposed"]


def test_resigning_while_the_role_is_taken_anew_does_not_wait_for_it() -> None:
    # The election thread takes the role again (after a rejoin) and waits, holding the
    # transition, for the store's write lock; the write that holds that lock was fenced by the
    # new producer and resigns. Before: resign waited for the transition, a deadlock.
    taking = threading.Event()
    write_lock_free = threading.Event()

    def take_role() -> None:
        taking.set()
        assert write_lock_free.wait(10)

    made, calls = election(take_role)
    elector = threading.Thread(target=made._elect, daemon=True)
    elector.start()
    assert taking.wait(10)
    resigner = threading.Thread(target=made.resign, daemon=True)
    resigner.start()
    resigner.join(5)
    assert not resigner.is_alive(), "resign waited for the role change: a deadlock"
    write_lock_free.set()
    elector.join(5)
    assert made.elected and calls == ["elected"]  # the new role stands
