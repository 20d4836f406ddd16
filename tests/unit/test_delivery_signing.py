"""Signatures checked by the `standardwebhooks` package (a verifier we did not write)."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from delivery.signing import signature_headers
from schemas.event import Event
from schemas.event_types import EventType
from schemas.secrets import generate_secret


def _event_body() -> tuple[str, bytes]:
    event = Event.new(EventType.INSTANCE_CREATED, "ten_1").with_payload({"a": [1, "é"]})
    return event.id, event.to_json().encode()


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = generate_secret()
    event_id, body = _event_body()
    headers = signature_headers(event_id, int(time.time()), body, [secret])
    assert headers["webhook-id"] == event_id
    assert Verifier(secret).verify(body, headers) == json.loads(body)


def test_rotation_signs_with_every_active_secret() -> None:
    old, new = generate_secret(), generate_secret(48)
    event_id, body = _event_body()
    headers = signature_headers(event_id, int(time.time()), body, [old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Verifier(old).verify(body, headers, json_parse=False)
    Verifier(new).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Verifier(generate_secret()).verify(body, headers, json_parse=False)


def test_tampering_is_detected() -> None:
    secret = generate_secret()
    event_id, body = _event_body()
    headers = signature_headers(event_id, int(time.time()), body, [secret])
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body + b" ", headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body, {**headers, "webhook-id": "evt_other"}, json_parse=False)
    stale = signature_headers(event_id, int(time.time()) - 3600, body, [secret])
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body, stale, json_parse=False)


def test_no_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secrets"):
        signature_headers("evt_x", 0, b"{}", [])
