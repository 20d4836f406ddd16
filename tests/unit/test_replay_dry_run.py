"""``cpevents replay --webhook … --dry-run``: the option rules and the webhook's payload filter
narrowing what a replay (and a redelivery) selects."""

from __future__ import annotations

import uuid

import pytest

from schemas import filters
from schemas.event import Event
from schemas.ids import WEBHOOK, new_id
from schemas.serde import Serde
from schemas.webhook import Webhook
from streams.audit import AuditTopic, RecordFilter
from streams.audit.options import ReplayOptionError, ReplayOptions
from streams.audit.pipeline import ReplayStats, select_event_json, select_events
from streams.audit.reader import RawRecord
from streams.audit.redeliver import redelivery_filter

NOW = 1_767_225_600_000
HOOK = "hook_01h455vb4pex5vsknk084sn02q"


def test_a_dry_run_needs_a_webhook_and_past_events_only() -> None:
    plan = ReplayOptions(webhook=HOOK, dry_run=True, since="1d").validate(NOW)
    assert plan.dry_run and plan.target_webhook == HOOK and not plan.redeliver
    for options in (
        ReplayOptions(dry_run=True),
        ReplayOptions(dry_run=True, webhook=HOOK, follow=True),
        ReplayOptions(dry_run=True, webhook=HOOK, redeliver=True),
        ReplayOptions(dry_run=True, webhook=HOOK, topic=AuditTopic.DELIVERIES),
    ):
        with pytest.raises(ReplayOptionError) as caught:
            options.validate(NOW)
        assert caught.value.field == "dry-run"


def _hook(filter_: dict[str, object] | None) -> Webhook:
    return Webhook(
        id=new_id(WEBHOOK),
        tenant_id="ten_a",
        url="https://example.com/h",
        events=("instance.*",),
        filter_json=None if filter_ is None else filters.filter_text(filter_),
    )


def _records(serde: Serde) -> tuple[list[RawRecord], list[Event]]:
    events = [
        Event.new("instance.created", "ten_a").with_payload({"region": region})
        for region in ("eu", "us", "eu")
    ] + [Event.new("deploy.started", "ten_a").with_payload({"region": "eu"})]
    records = [
        RawRecord(1000 + i, "t", 0, i, b"ten_a", serde.events.encode(e, "t"), ())
        for i, e in enumerate(events)
    ]
    return records, events


@pytest.mark.parametrize("as_json", [False, True])
def test_the_webhook_filter_narrows_the_selection(as_json: bool) -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    records, events = _records(serde)
    webhook = _hook({"payload": {"region": "eu"}})
    keep = redelivery_filter(RecordFilter(), webhook, webhook.id)
    assert not keep.matches_every_event
    select = select_event_json if as_json else select_events
    stats = ReplayStats()
    kept = [r.offset for r, _ in select(records, serde, keep, lambda *_: None, stats)]
    assert kept == [0, 2]  # eu instance events; not us, not the deploy type
    assert stats.matched == 2
    assert keep.matches(events[0]) and not keep.matches(events[1])
    unfiltered = redelivery_filter(RecordFilter(), _hook(None), webhook.id)
    assert unfiltered.accepts is None
    assert [
        r.offset for r, _ in select(records, serde, unfiltered, lambda *_: None, ReplayStats())
    ] == [0, 1, 2]
