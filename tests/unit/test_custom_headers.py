"""Custom headers: name and value rules, encryption at rest, names-only answers, the record's
Avro evolution, and one decryption per webhook version in the delivery worker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from delivery.keyring import Keyring
from producers.gateway.problems import Problem
from producers.gateway.validation import parse_webhook_create, parse_webhook_update
from producers.gateway.webhook_ops import create_webhook, reencrypted, update_webhook
from schemas.avsc import schema_dict
from schemas.custom_headers import MAX_HEADERS, MAX_VALUE_LENGTH, check_headers
from schemas.errors import ContractError
from schemas.ids import WEBHOOK, new_id
from schemas.secrets import SecretBox, generate_encryption_key
from schemas.serde import Serde
from schemas.timestamps import utc_now
from schemas.webhook import EncryptedHeader, Webhook

KEY = "k-" + "s3cr3t" * 3
URL = "https://example.com/h"


def test_valid_headers_keep_their_order() -> None:
    assert check_headers({"X-Api-Key": KEY, "X-Team": "a b"}) == (
        ("X-Api-Key", KEY),
        ("X-Team", "a b"),
    )


@pytest.mark.parametrize(
    ("headers", "field", "reason"),
    [
        ({"webhook-id": "x"}, "headers.webhook-id", "reserved"),
        ({"Webhook-Signature": "x"}, "headers.Webhook-Signature", "reserved"),
        ({"Content-Type": "x"}, "headers.Content-Type", "reserved"),
        ({"content-length": "1"}, "headers.content-length", "reserved"),
        ({"Host": "x"}, "headers.Host", "reserved"),
        ({"User-Agent": "x"}, "headers.User-Agent", "reserved"),
        ({"traceparent": "x"}, "headers.traceparent", "reserved"),
        ({"Connection": "close"}, "headers.Connection", "reserved"),
        ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding", "reserved"),
        ({"Bad Name": "x"}, "headers.Bad Name", "header name"),
        ({"X-A": ""}, "headers.X-A", "non-empty"),
        ({"X-A": 3}, "headers.X-A", "non-empty string"),
        ({"X-A": KEY + "\r\nX-Evil: 1"}, "headers.X-A", "printable"),
        ({"X-A": "v" * (MAX_VALUE_LENGTH + 1)}, "headers.X-A", "at most"),
        ({"X-A": "1", "x-a": "2"}, "headers.x-a", "twice"),
        ({f"X-{n}": "v" for n in range(MAX_HEADERS + 1)}, "headers", "at most"),
        ({f"X-{n}": "v" * 900 for n in range(5)}, "headers", "total"),
        (["X-A"], "headers", "JSON object"),
    ],
)
def test_bad_headers_are_refused_naming_them_never_the_value(
    headers: Any, field: str, reason: str
) -> None:
    with pytest.raises(ContractError) as caught:
        check_headers(headers)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert KEY not in str(caught.value) and "X-Evil" not in caught.value.reason


def test_the_gateway_encrypts_values_and_answers_names_only() -> None:
    box = SecretBox(generate_encryption_key())
    created, _ = create_webhook(
        parse_webhook_create({"url": URL, "headers": {"X-Api-Key": KEY}}), "ten_a", box, utc_now()
    )
    [stored] = created.headers
    assert stored.name == "X-Api-Key" and box.decrypt(stored.ciphertext) == KEY
    assert KEY not in stored.ciphertext
    assert created.to_json_dict()["headers"] == ["X-Api-Key"]
    for text in (json.dumps(created.to_json_dict()), repr(created)):
        assert KEY not in text and stored.ciphertext not in text
    replaced = update_webhook(
        created, parse_webhook_update({"headers": {"X-Other": "v"}}), utc_now(), box
    )
    assert [h.name for h in replaced.headers] == ["X-Other"]
    kept = update_webhook(replaced, parse_webhook_update({"url": URL + "2"}), utc_now(), box)
    assert kept.headers == replaced.headers
    removed = update_webhook(kept, parse_webhook_update({"headers": None}), utc_now(), box)
    assert removed.headers == () and "headers" not in removed.to_json_dict()
    with pytest.raises(Problem) as caught:
        parse_webhook_create({"url": URL, "headers": {"Host": "evil"}})
    assert (caught.value.status, caught.value.field) == (422, "headers.Host")


def test_a_key_rotation_reencrypts_header_values() -> None:
    old, new = generate_encryption_key(), generate_encryption_key()
    webhook = Webhook(
        id=new_id(WEBHOOK),
        tenant_id="t",
        url=URL,
        headers=(EncryptedHeader("X-Api-Key", SecretBox(old).encrypt(KEY)),),
    )
    moved = reencrypted(webhook, SecretBox(f"{new},{old}"))
    assert SecretBox(new).decrypt(moved.headers[0].ciphertext) == KEY


def test_records_round_trip_and_old_records_have_no_headers() -> None:
    serde = Serde(f"mock://{uuid.uuid4().hex}")
    webhook = Webhook(
        id=new_id(WEBHOOK), tenant_id="t", url=URL, headers=(EncryptedHeader("X-A", "tok"),)
    )
    assert serde.webhooks.decode(serde.webhooks.encode(webhook, "w"), "w") == webhook
    older = schema_dict("Webhook")
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("headers", "filter")]
    plain = Webhook(id=new_id(WEBHOOK), tenant_id="t", url=URL)
    record = {k: v for k, v in plain.to_avro().items() if k not in ("headers", "filter")}
    data = AvroSerializer(serde.client, json.dumps(older))(
        record, SerializationContext("old", MessageField.VALUE)
    )
    assert serde.webhooks.decode(data, "old").headers == ()


class CountingBox(SecretBox):
    def __init__(self, keys: str) -> None:
        super().__init__(keys)
        self.decrypted = 0

    def decrypt(self, ciphertext: str) -> str:
        self.decrypted += 1
        return super().decrypt(ciphertext)


def test_the_worker_decrypts_headers_once_per_webhook_version() -> None:
    box = CountingBox(generate_encryption_key())
    keyring = Keyring(box)
    plain = Webhook(id=new_id(WEBHOOK), tenant_id="t", url=URL)
    assert keyring.headers(plain) == ()
    with_headers = Webhook(
        id=new_id(WEBHOOK),
        tenant_id="t",
        url=URL,
        headers=(EncryptedHeader("X-Api-Key", box.encrypt(KEY)),),
    )
    for _ in range(3):
        assert keyring.headers(with_headers) == (("X-Api-Key", KEY),)
    assert box.decrypted == 1
    next_version = with_headers.updated()
    assert keyring.headers(next_version) == (("X-Api-Key", KEY),)
    assert box.decrypted == 2
    broken = with_headers.updated(headers=(EncryptedHeader("X-A", "not-a-token"),))
    with pytest.raises(ValueError):
        keyring.headers(broken)
