"""Replication of new topics (issue 19): the ``auto`` decision from the broker count, the
report of existing topics below the settings, and the producers' acks=all + idempotence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plumbing.kafka.clients import producer_config
from plumbing.kafka.topic_admin import (
    FACTOR,
    MIN_INSYNC,
    Replication,
    decide_replication,
    replication_shortfall,
    with_replication,
)
from plumbing.settings import Settings


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Replication(1, 1)),
        (2, Replication(2, 1)),
        (3, Replication(3, 2)),
        (5, Replication(3, 2)),
        (0, Replication(1, 1)),  # no broker listed yet: as a single broker
    ],
)
def test_auto_follows_the_broker_count(brokers: int, expected: Replication) -> None:
    assert decide_replication("auto", "auto", brokers) == expected


def test_explicit_values_win_over_the_broker_count() -> None:
    assert decide_replication(2, "auto", 3) == Replication(2, 1)
    assert decide_replication(3, 1, 3) == Replication(3, 1)
    assert decide_replication("auto", 1, 3) == Replication(3, 1)


def test_a_min_isr_above_the_replicas_is_refused() -> None:
    with pytest.raises(ValueError, match="every acks=all write would be refused"):
        decide_replication("auto", 2, 1)


def test_settings_default_to_auto_and_take_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().min_insync_replicas == "auto"
    monkeypatch.setenv("CPEVENTS_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("CPEVENTS_MIN_INSYNC_REPLICAS", "2")
    settings = Settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    monkeypatch.setenv("CPEVENTS_REPLICATION_FACTOR", "auto")
    assert Settings().replication_factor == "auto"


@pytest.mark.parametrize("value", ["0", "three", "-1"])
def test_settings_refuse_other_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CPEVENTS_MIN_INSYNC_REPLICAS", value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_topic_with_fewer_replicas_or_a_lower_min_isr_is_reported() -> None:
    wanted = Replication(3, 2)
    assert replication_shortfall(1, "1", wanted) == {FACTOR: (1, 3), MIN_INSYNC: (1, 2)}
    assert replication_shortfall(3, "1", wanted) == {MIN_INSYNC: (1, 2)}
    assert replication_shortfall(2, "2", wanted) == {FACTOR: (2, 3)}
    assert replication_shortfall(3, None, wanted) == {MIN_INSYNC: (None, 2)}


def test_a_topic_at_or_above_the_settings_is_not_reported() -> None:
    assert replication_shortfall(3, "2", Replication(3, 2)) == {}
    assert replication_shortfall(3, "3", Replication(3, 2)) == {}
    assert replication_shortfall(1, "1", Replication(1, 1)) == {}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"linger.ms": 2, "batch.size": 1_000_000, "client.id": "router"},  # the router's
        {"transactional.id": "cpevents-registry._schemas", "linger.ms": 0},  # the registry's
    ],
)
def test_every_producer_is_durable(overrides: dict[str, object]) -> None:
    config = producer_config(Settings(bootstrap_servers="k:9092"), **overrides)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True


def test_settings_with_explicit_replication_are_resolved_without_asking_the_cluster() -> None:
    # 127.0.0.1:1 answers nothing: a lookup would fail after its timeout.
    settings = Settings(
        bootstrap_servers="127.0.0.1:1", replication_factor=3, min_insync_replicas=2
    )
    resolved = with_replication(settings)
    assert (resolved.replication_factor, resolved.min_insync_replicas) == (3, 2)
