"""Which secrets sign an attempt: decrypted once, answered from memory until one expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from delivery.keyring import Keyring
from schemas.ids import WEBHOOK, new_id
from schemas.secrets import SecretBox, generate_encryption_key, generate_secret
from schemas.webhook import EncryptedSecret, Webhook

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class CountingBox(SecretBox):
    def __init__(self) -> None:
        super().__init__(generate_encryption_key())
        self.decrypted = 0

    def decrypt(self, ciphertext: str) -> str:
        self.decrypted += 1
        return super().decrypt(ciphertext)


def webhook(*secrets: EncryptedSecret) -> Webhook:
    return Webhook(id=new_id(WEBHOOK), tenant_id="ten_a", url="https://a.example/", secrets=secrets)


def test_secrets_are_decrypted_once_and_kept() -> None:
    box = CountingBox()
    plain = generate_secret()
    hook = webhook(EncryptedSecret(box.encrypt(plain), T0))
    keyring = Keyring(box)
    now = T0.timestamp()
    assert keyring.active(hook, now) == (plain,)
    assert keyring.active(hook, now + 3600) == (plain,)
    assert box.decrypted == 1


def test_a_rotation_overlap_ends_when_the_old_secret_expires() -> None:
    box = CountingBox()
    old, new = generate_secret(), generate_secret()
    expiry = T0 + timedelta(hours=1)
    hook = webhook(
        EncryptedSecret(box.encrypt(old), T0 - timedelta(days=1), expires_at=expiry),
        EncryptedSecret(box.encrypt(new), T0),
    )
    keyring = Keyring(box)
    assert keyring.active(hook, T0.timestamp()) == (old, new)
    assert keyring.active(hook, expiry.timestamp() - 0.001) == (old, new)
    # The answer kept from before must not outlive the old secret.
    assert keyring.active(hook, expiry.timestamp()) == (new,)
    assert keyring.active(hook, expiry.timestamp() + 60) == (new,)


def test_a_changed_webhook_is_read_again() -> None:
    box = CountingBox()
    first, second = generate_secret(), generate_secret()
    hook = webhook(EncryptedSecret(box.encrypt(first), T0))
    keyring = Keyring(box)
    assert keyring.active(hook, T0.timestamp()) == (first,)
    rotated = hook.updated(secrets=(EncryptedSecret(box.encrypt(second), T0),))
    assert keyring.active(rotated, T0.timestamp()) == (second,)


def test_an_undecryptable_secret_is_an_error_naming_the_key() -> None:
    other = SecretBox(generate_encryption_key())
    hook = webhook(EncryptedSecret(other.encrypt(generate_secret()), T0))
    with pytest.raises(ValueError, match="CPEVENTS_SECRET_KEY"):
        Keyring(CountingBox()).active(hook, T0.timestamp())
