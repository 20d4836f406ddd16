"""Webhook signing secrets: generation and encryption at rest.

Secrets are ``whsec_`` + base64 of random bytes (Standard Webhooks). They are stored in Kafka only
as Fernet tokens under a key from configuration (``CPEVENTS_SECRET_KEY``).

Key rotation: ``CPEVENTS_SECRET_KEY`` may list several keys, comma-separated. The first one
encrypts, every one decrypts (cryptography's ``MultiFernet``), and :meth:`SecretBox.rotate`
re-encrypts a token under the first key. To rotate: put a new key first everywhere (``cpevents
keygen --rotate``), let writes re-encrypt, then drop the old key.
"""

from __future__ import annotations

import base64
import secrets as _random

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SECRET_PREFIX = "whsec_"


def generate_secret(num_bytes: int = 32) -> str:
    """A new signing secret: ``whsec_`` + base64 of ``num_bytes`` (24 to 64) random bytes."""
    if not 24 <= num_bytes <= 64:
        raise ValueError("num_bytes: must be between 24 and 64")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(num_bytes)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def generate_encryption_key() -> str:
    """A new key for ``CPEVENTS_SECRET_KEY``."""
    return Fernet.generate_key().decode()


def split_keys(keys: str) -> list[str]:
    """The keys of a ``CPEVENTS_SECRET_KEY`` value (comma-separated; blanks ignored)."""
    return [key.strip() for key in keys.split(",") if key.strip()]


def rotated_key_list(current: str | None, new_key: str | None = None) -> str:
    """A ``CPEVENTS_SECRET_KEY`` value with a fresh key (or ``new_key``) first, then the keys
    of ``current`` (duplicates dropped): the first step of a key rotation."""
    fresh = new_key or generate_encryption_key()
    keys = [fresh, *(key for key in split_keys(current or "") if key != fresh)]
    return ",".join(keys)


class SecretBox:
    """Encrypts webhook secrets with the first configured key; decrypts with any of them."""

    def __init__(self, keys: str) -> None:
        parts = split_keys(keys)
        if not parts:
            raise ValueError("CPEVENTS_SECRET_KEY: is empty (make a key with `cpevents keygen`)")
        fernets = []
        for position, key in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                # Never echo the key itself: say which one of the list is wrong.
                where = f"key {position} of {len(parts)}" if len(parts) > 1 else "the key"
                raise ValueError(
                    f"CPEVENTS_SECRET_KEY: {where} must be a urlsafe-base64 32-byte key "
                    "(make one with `cpevents keygen`)"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, secret: str) -> str:
        """A Fernet token of ``secret`` under the first key."""
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The secret in ``ciphertext``, encrypted under any configured key."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "secret: cannot be decrypted with the configured CPEVENTS_SECRET_KEY"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` re-encrypted under the first key (ValueError if no key opens it)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "secret: cannot be decrypted with the configured CPEVENTS_SECRET_KEY"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
