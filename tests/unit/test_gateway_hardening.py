"""The gateway's hardening (issue 14), pure parts: the secrets cap, versions and If-Match,
per-key write locks, key re-encryption, the delivery index and its cursors, the event size
limit and the health answer."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from datetime import timedelta
from typing import Any

import fastavro
import pytest
from aiohttp.test_utils import make_mocked_request
from confluent_kafka.schema_registry import Schema
from pydantic import SecretStr

from plumbing.limits import EventTooLarge, check_event_size
from plumbing.settings import Settings
from producers.gateway.delivery_index import (
    DeliveryFilter,
    DeliveryIndex,
    decode_cursor,
    encode_cursor,
)
from producers.gateway.problems import Problem
from producers.gateway.server import Gateway
from producers.gateway.validation import parse_delivery_query, parse_webhook_create
from producers.gateway.versions import KeyedLocks, check_if_match, etag
from producers.gateway.webhook_ops import (
    create_webhook,
    reencrypted,
    rotate_secret,
    update_webhook,
)
from producers.on_demand import OnDemand
from schemas.avsc import schema_dict
from schemas.delivery_records import DeliveryStatus, WebhookDelivery
from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import WEBHOOK, new_id
from schemas.secrets import SecretBox, generate_encryption_key
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import Webhook


def new_webhook(box: SecretBox) -> tuple[Webhook, str]:
    return create_webhook(parse_webhook_create({"url": "https://x.test"}), "ten_a", box, utc_now())


# -- secrets cap and versions -------------------------------------------------------------------


def test_rotating_again_ends_the_oldest_overlaps_beyond_the_cap() -> None:
    box = SecretBox(generate_encryption_key())
    webhook, first = new_webhook(box)
    now = utc_now()
    secrets = [first]
    for _ in range(4):
        webhook, secret = rotate_secret(webhook, box, timedelta(hours=1), now, max_active=3)
        secrets.append(secret)
        active = [box.decrypt(s.ciphertext) for s in webhook.active_secrets(now)]
        assert active == secrets[-3:]  # the newest three, oldest first
        assert len(webhook.secrets) <= 3
    single, only = rotate_secret(webhook, box, timedelta(hours=1), now, max_active=1)
    assert [box.decrypt(s.ciphertext) for s in single.secrets] == [only]
    with pytest.raises(ValueError, match="max_active"):
        rotate_secret(webhook, box, timedelta(hours=1), now, max_active=0)


def test_every_write_is_the_next_version() -> None:
    box = SecretBox(generate_encryption_key())
    webhook, _ = new_webhook(box)
    assert webhook.version == 1
    updated = update_webhook(webhook, {"active": False}, utc_now())
    rotated, _ = rotate_secret(updated, box, timedelta(hours=1), utc_now())
    assert (updated.version, rotated.version) == (2, 3)
    assert rotated.updated(url="https://y.test").version == 4
    assert etag(rotated) == '"3"'
    with pytest.raises(ValueError, match="version"):
        Webhook(id=new_id(WEBHOOK), tenant_id="t", url="https://x.test", version=-1)


def test_records_written_before_versions_existed_still_read_as_version_0() -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    topic = "p.webhooks"
    old_schema = schema_dict("Webhook")
    old_schema["fields"] = [f for f in old_schema["fields"] if f["name"] != "version"]
    schema_id = serde.client.register_schema(
        f"{topic}-value", Schema(json.dumps(old_schema), "AVRO")
    )
    webhook = Webhook(id=new_id(WEBHOOK), tenant_id="ten_a", url="https://x.test")
    record = {k: v for k, v in webhook.to_avro().items() if k != "version"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old_schema), record)
    framed = b"\x00" + struct.pack(">I", schema_id) + body.getvalue()
    decoded = serde.webhooks.decode(framed, topic)
    assert decoded.version == 0 and decoded.id == webhook.id
    # And the new schema round-trips the field.
    bumped = webhook.updated(active=False)
    assert serde.webhooks.decode(serde.webhooks.encode(bumped, topic), topic).version == 1


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        *[(None, True), ('"3"', True), ('W/"3"', True), ('"1", "3"', True), ("*", True)],
        *[('"2"', False), ("3", False), ("", False)],
    ],
)
def test_if_match(header: str | None, ok: bool) -> None:
    webhook = Webhook(id=new_id(WEBHOOK), tenant_id="t", url="https://x.test", version=3)
    if ok:
        check_if_match(header, webhook)
        return
    with pytest.raises(Problem) as info:
        check_if_match(header, webhook)
    assert (info.value.status, info.value.field) == (409, "If-Match")
    assert info.value.headers == {"ETag": '"3"'}


async def test_keyed_locks_queue_writers_of_one_key_in_order_and_forget_idle_keys() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def write(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    await asyncio.gather(write("a", "a1", 0.02), write("a", "a2", 0), write("b", "b1", 0))
    assert order.index("a1-") < order.index("a2+")  # a2 waited for a1
    assert order.index("b1+") < order.index("a1-")  # another key did not
    assert len(locks) == 0


def test_writes_move_secrets_to_the_first_key() -> None:
    old_key, new_key = generate_encryption_key(), generate_encryption_key()
    old_box = SecretBox(old_key)
    webhook, secret = new_webhook(old_box)
    both = SecretBox(f"{new_key},{old_key}")
    moved = reencrypted(webhook, both)
    assert SecretBox(new_key).decrypt(moved.secrets[0].ciphertext) == secret
    assert reencrypted(webhook, old_box) is webhook  # one key: nothing to move
    stranger = SecretBox(f"{generate_encryption_key()},{new_key}")
    assert reencrypted(webhook, stranger).secrets == webhook.secrets  # kept, not dropped


# -- the delivery index ---------------------------------------------------------------------


def delivery(index: int, tenant: str = "ten_a", **changes: Any) -> WebhookDelivery:
    values: dict[str, Any] = {
        "id": f"dlv_{index:03}",
        "webhook_id": "hook_1" if index % 2 else "hook_2",
        "event_id": f"evt_{index // 3}",
        "tenant_id": tenant,
        "status": DeliveryStatus.DELIVERED if index % 3 else DeliveryStatus.RETRYING,
        "attempts": 1,
        "updated_at": utc_now().replace(microsecond=0) + timedelta(seconds=index),
    }
    values.update(changes)
    return WebhookDelivery(**values)


def all_pages(
    index: DeliveryIndex, where: DeliveryFilter, limit: int, data: dict[str, WebhookDelivery]
) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page = index.page(where, limit, after, data.get)
        pages.append([d.id for d in page.deliveries])
        if page.next_cursor is None:
            return pages
        after = decode_cursor(page.next_cursor)


def test_index_pages_newest_first_per_dimension_and_follows_updates() -> None:
    index = DeliveryIndex()
    data: dict[str, WebhookDelivery] = {}

    def put(new: WebhookDelivery | None, key: str) -> None:
        old = data.get(key)
        if new is None:
            data.pop(key, None)
        else:
            data[key] = new
        index.on_change(key, old, new)

    for i in range(10):
        put(delivery(i, "ten_a" if i < 8 else "ten_b"), f"dlv_{i:03}")
    newest = [f"dlv_{i:03}" for i in range(9, -1, -1)]
    assert all_pages(index, DeliveryFilter(), 4, data) == [newest[:4], newest[4:8], newest[8:]]
    tenant_a = [f"dlv_{i:03}" for i in range(7, -1, -1)]
    assert all_pages(index, DeliveryFilter("ten_a"), 8, data) == [tenant_a]
    hook_1 = [f"dlv_{i:03}" for i in (7, 5, 3, 1)]
    assert all_pages(index, DeliveryFilter("ten_a", webhook_id="hook_1"), 3, data) == [
        hook_1[:3],
        hook_1[3:],
    ]
    assert all_pages(index, DeliveryFilter(event_id="evt_1"), 5, data) == [
        ["dlv_005", "dlv_004", "dlv_003"]
    ]
    retrying = DeliveryFilter(status=DeliveryStatus.RETRYING)
    assert all_pages(index, retrying, 10, data) == [["dlv_009", "dlv_006", "dlv_003", "dlv_000"]]

    # An update moves a delivery to the front; a tombstone removes it everywhere.
    put(delivery(0, updated_at=utc_now() + timedelta(days=1)), "dlv_000")
    put(None, "dlv_009")
    assert all_pages(index, DeliveryFilter(), 3, data)[0] == ["dlv_000", "dlv_008", "dlv_007"]
    assert all_pages(index, DeliveryFilter("ten_b"), 5, data) == [["dlv_008"]]
    assert len(index) == 9
    assert index.page(DeliveryFilter("ten_z"), 5, None, data.get).deliveries == []


def test_cursors_are_opaque_and_checked() -> None:
    key = (1_700_000_000_123_456, "dlv_01h455vb4pex5vsknk084sn02q")
    cursor = encode_cursor(key)
    assert decode_cursor(cursor) == key
    assert "dlv_" not in cursor and "=" not in cursor
    for bad in ("", "!!", "bm90LWEta2V5", encode_cursor((1, "x"))[:-3]):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(bad)
    assert parse_delivery_query({"cursor": cursor}).cursor == key
    with pytest.raises(Problem) as info:
        parse_delivery_query({"cursor": "nope"})
    assert (info.value.status, info.value.field) == (422, "cursor")


# -- event size and health ------------------------------------------------------------------


def gateway_settings(**changes: Any) -> Settings:
    return Settings(
        schema_registry_url=f"mock://{uuid.uuid4().hex}",
        secret_key=SecretStr(generate_encryption_key()),
        topic_prefix="p.",
        **changes,
    )


def test_the_limit_is_on_the_encoded_event_and_names_the_payload() -> None:
    gateway = Gateway(gateway_settings(max_event_bytes=4096))
    small = Event.new(EventType.DEPLOY_STARTED, "ten_a").with_payload({"x": "<" * 500})
    escaped = Event.new(EventType.DEPLOY_STARTED, "ten_a").with_payload({"x": "<" * 1000})
    assert len(json.dumps(escaped.to_json_dict())) < 4096  # small as JSON...
    assert len(gateway._records([small], False)) == 1
    with pytest.raises(Problem) as info:
        gateway._records([small, escaped], True)  # ...six times larger once encoded
    assert (info.value.status, info.value.field) == (413, "[1].payload")
    assert "4096" in info.value.detail
    with pytest.raises(EventTooLarge) as error:
        check_event_size(b"x" * 11, 10)
    assert (error.value.field, error.value.size, error.value.limit) == ("payload", 11, 10)
    check_event_size(b"x" * 10, 10)


class FakeStore:
    def __init__(self, topic: str, error: str | None) -> None:
        self._health = (topic, error)

    def health(self) -> tuple[str, str | None]:
        return self._health


async def test_health_is_503_naming_each_failing_view() -> None:
    gateway = Gateway(gateway_settings())
    request = make_mocked_request("GET", "/healthz")
    assert (await gateway.health(request)).status == 503  # not started
    gateway._webhooks = FakeStore("p.webhooks", None)  # type: ignore[assignment]
    # The attempt-log index is started by requests only: while idle it counts as healthy.
    assert (await gateway.health(request)).status == 200

    async def running(store: FakeStore) -> None:
        async def start() -> FakeStore:
            return store

        await gateway._deliveries.close()
        gateway._deliveries = OnDemand("test", start, lambda _: None)  # type: ignore[arg-type]
        await gateway._deliveries.get()

    await running(FakeStore("p.webhook-deliveries", "RuntimeError: poll"))
    response = await gateway.health(request)
    assert response.status == 503
    assert json.loads(response.body) == {  # type: ignore[arg-type]
        "status": "unhealthy",
        "views": {"p.webhook-deliveries": "RuntimeError: poll"},
    }
    await running(FakeStore("p.webhook-deliveries", None))
    assert (await gateway.health(request)).status == 200
