"""The portal's form rules (producers/portal/filters.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producers.portal.filters import (
    DeliveryFilters,
    event_type_groups,
    parse_delivery_filters,
    parse_range,
    sample_event_type,
    selected_patterns,
    subscribed_types,
    subscribes,
)
from schemas.delivery_records import DeliveryStatus, WebhookDelivery
from schemas.event_types import SUBSYSTEMS, EventType

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _delivery(
    status: DeliveryStatus = DeliveryStatus.DELIVERED, **changes: object
) -> WebhookDelivery:
    values: dict[str, object] = {
        "id": "deli_1", "webhook_id": "hook_1", "event_id": "evt_1", "tenant_id": "ten_a",
        "status": status, "attempts": 1, "created_at": T0, "updated_at": T0,
    }  # fmt: skip
    values.update(changes)
    return WebhookDelivery(**values)  # type: ignore[arg-type]


def test_groups_cover_the_catalog_once_with_wildcards() -> None:
    groups = event_type_groups()
    assert [g.subsystem for g in groups] == list(SUBSYSTEMS)
    listed = [t for g in groups for t in g.types]
    assert sorted(listed) == sorted(str(t) for t in EventType)
    deploy = next(g for g in groups if "deploy.started" in g.types)
    assert "deploy.*" in deploy.wildcards


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        ((), "deploy.failed", True),
        (("*",), "instance.created", True),
        (("deploy.*",), "deploy.failed", True),
        (("deploy.*",), "instance.created", False),
        (("instance.created",), "instance.created", True),
        (("instance.created",), "instance.createdx", False),
    ],
)
def test_subscribes_as_the_router(
    patterns: tuple[str, ...], event_type: str, expected: bool
) -> None:
    assert subscribes(patterns, event_type) is expected


def test_test_event_type_is_a_subscribed_type_a_tenant_may_send() -> None:
    assert sample_event_type(["deploy.*"]) == "deploy.started"
    assert sample_event_type([]) == "instance.created"
    assert sample_event_type(["webhook.disabled"]) is None  # a system type only
    assert subscribed_types(["cert.*"]) == ["cert.provisioned", "cert.expiring"]


def test_selected_patterns_drop_what_a_wildcard_covers() -> None:
    assert selected_patterns(["deploy.*", "deploy.failed", "instance.created"]) == [
        "deploy.*",
        "instance.created",
    ]
    assert selected_patterns(["deploy.failed"], " health.*, deploy.failed ,") == [
        "deploy.failed",
        "health.*",
    ]
    assert selected_patterns(["*", "deploy.*"]) == ["*"]
    assert selected_patterns([]) == []


def test_delivery_filters_parse_and_match() -> None:
    filters, errors = parse_delivery_filters(
        {"endpoint": "hook_1", "status": "dead_lettered", "type": "deploy.failed",
         "since": "2026-12-05T08:00", "until": "2026-12-05T10:00"}
    )  # fmt: skip
    assert errors == []
    dead = _delivery(DeliveryStatus.DEAD_LETTERED)
    assert filters.matches(dead, "deploy.failed")
    assert not filters.matches(dead, "deploy.started")
    assert not filters.matches(_delivery(), "deploy.failed")
    assert not filters.matches(
        _delivery(DeliveryStatus.DEAD_LETTERED, webhook_id="hook_2"), "deploy.failed"
    )
    assert not filters.matches(
        _delivery(DeliveryStatus.DEAD_LETTERED, created_at=T0 + timedelta(hours=1)), "deploy.failed"
    )
    assert filters.query()["since"] == "2026-12-05T08:00"
    assert DeliveryFilters().matches(dead, None)


def test_bad_filters_are_reported_and_ignored() -> None:
    filters, errors = parse_delivery_filters({"status": "lost", "type": "<b>", "since": "soon"})
    assert filters == DeliveryFilters()
    assert len(errors) == 3


def test_replay_range() -> None:
    now = T0
    start, end = parse_range("2026-12-05T08:00", "", now)
    assert (start, end) == (T0 - timedelta(hours=1), now)
    assert parse_range("2026-12-05T07:00", "2026-12-05T12:00", now)[1] == now  # not the future
    with pytest.raises(ValueError, match="start"):
        parse_range("", "2026-12-05T08:00", now)
    with pytest.raises(ValueError, match="before"):
        parse_range("2026-12-05T08:30", "2026-12-05T08:00", now)


class _Message:
    """The parts of a consumed record the replay's range check reads."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


def test_replay_reads_each_partition_up_to_its_stop_offset() -> None:
    from producers.portal.replay import _in_range

    stops = {0: 3, 1: 1}
    assert _in_range(_Message(0, 1), stops)  # type: ignore[arg-type]
    assert _in_range(_Message(0, 2), stops) and 0 not in stops  # type: ignore[arg-type]
    assert not _in_range(_Message(1, 5), stops) and stops == {}  # type: ignore[arg-type]
    assert not _in_range(_Message(2, 0), {0: 1})  # type: ignore[arg-type]
