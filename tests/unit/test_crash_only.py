"""Restart backoffs of the crash-only parts (KafkaBus subscriptions; the view's reader)."""

from __future__ import annotations

import pytest

from producers.kafka_bus import RestartPolicy


def test_restart_backoff_doubles_up_to_the_ceiling() -> None:
    policy = RestartPolicy(initial_backoff=0.5, max_backoff=4.0)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.backoff(10_000) == 4.0  # no overflow after a long outage
    for initial, ceiling in ((0.0, 1.0), (2.0, 1.0)):
        with pytest.raises(ValueError, match="initial_backoff"):
            RestartPolicy(initial, ceiling)
