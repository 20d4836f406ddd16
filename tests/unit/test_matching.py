"""Which webhooks an event reaches: patterns, empty lists, inactive webhooks, tenant isolation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from schemas.webhook import Webhook
from streams.matching import Subscription, WebhookIndex, matches

ALL_TYPES = [str(t) for t in EventType]


def hook(tenant: str = "ten_a", events: tuple[str, ...] = (), active: bool = True) -> Webhook:
    return Webhook(
        id=new_id(WEBHOOK), tenant_id=tenant, url="https://example.com/hook", events=events
    ).updated(active=active)


def test_exact_type_matches_only_itself() -> None:
    webhook = hook(events=("instance.created",))
    assert matches(webhook, "instance.created")
    assert not matches(webhook, "instance.deleted")
    assert not matches(webhook, "deploy.started")


def test_prefix_wildcard_matches_its_family_only() -> None:
    webhook = hook(events=("instance.*",))
    instance_types = [t for t in ALL_TYPES if t.startswith("instance.")]
    assert instance_types and all(matches(webhook, t) for t in instance_types)
    assert not any(matches(webhook, t) for t in ALL_TYPES if t not in instance_types)


def test_star_and_empty_list_match_every_type() -> None:
    for events in [("*",), (), ("deploy.failed", "*")]:
        webhook = hook(events=events)
        assert all(matches(webhook, t) for t in ALL_TYPES), events


def test_mixed_patterns() -> None:
    subscription = Subscription.compile(["deploy.failed", "cert.*"])
    assert subscription.matches("deploy.failed")
    assert subscription.matches("cert.expiring")
    assert not subscription.matches("deploy.started")
    # "cert.*" is a prefix of whole segments, not of any string starting with "cert".
    assert not subscription.matches("certificate.issued")


def test_inactive_webhook_receives_nothing() -> None:
    webhook = hook(events=("*",), active=False)
    assert not any(matches(webhook, t) for t in ALL_TYPES)
    index = WebhookIndex([webhook])
    assert index.match("ten_a", "instance.created") == []
    assert len(index) == 0


def test_index_matches_only_the_tenants_subscribed_webhooks() -> None:
    a_all = hook("ten_a")
    a_deploy = hook("ten_a", ("deploy.*",))
    b_all = hook("ten_b")
    index = WebhookIndex([a_all, a_deploy, b_all])
    assert {w.id for w in index.match("ten_a", "deploy.failed")} == {a_all.id, a_deploy.id}
    assert [w.id for w in index.match("ten_a", "health.failed")] == [a_all.id]
    assert [w.id for w in index.match("ten_b", "deploy.failed")] == [b_all.id]
    assert index.match("ten_c", "deploy.failed") == []


def test_updates_deactivation_and_deletion_apply() -> None:
    webhook = hook("ten_a", ("instance.created",))
    index = WebhookIndex([webhook])
    index.put(webhook.updated(events=("deploy.*",)))
    assert index.match("ten_a", "instance.created") == []
    assert [w.id for w in index.match("ten_a", "deploy.started")] == [webhook.id]
    index.put(webhook.updated(active=False))
    assert index.match("ten_a", "deploy.started") == []
    index.put(webhook)  # reactivated
    index.apply(webhook.id, None)  # tombstone
    assert index.match("ten_a", "instance.created") == []
    assert len(index) == 0
    index.remove("hook_unknown")  # deleting an unknown id is a no-op


def test_moving_a_webhook_to_another_tenant_leaves_the_old_one() -> None:
    webhook = hook("ten_a")
    index = WebhookIndex([webhook])
    index.put(webhook.updated(tenant_id="ten_b"))
    assert index.match("ten_a", "instance.created") == []
    assert [w.id for w in index.match("ten_b", "instance.created")] == [webhook.id]


tenants = st.sampled_from(["ten_a", "ten_b", "ten_c", "ten_d"])
patterns = st.lists(
    st.sampled_from([*ALL_TYPES, "*", "instance.*", "deploy.*", "health.*", "cert.*", "quota.*"]),
    max_size=4,
)
webhook_specs = st.lists(st.tuples(tenants, patterns, st.booleans()), max_size=25)


@given(specs=webhook_specs, tenant=tenants, event_type=st.sampled_from(ALL_TYPES))
def test_property_matches_are_exactly_the_tenants_active_subscribers(
    specs: list[tuple[str, list[str], bool]], tenant: str, event_type: str
) -> None:
    webhooks = [hook(t, tuple(p), active) for t, p, active in specs]
    index = WebhookIndex(webhooks)
    matched = index.match(tenant, event_type)
    # Tenant isolation: nothing of another tenant, ever.
    assert all(w.tenant_id == tenant for w in matched)
    # And exactly the tenant's active webhooks whose patterns accept the type.
    expected = {w.id for w in webhooks if w.tenant_id == tenant and matches(w, event_type)}
    assert {w.id for w in matched} == expected
