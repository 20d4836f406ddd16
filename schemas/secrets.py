"""Webhook signing secrets: generation and encryption at rest.

Secrets are ``whsec_`` + base64 of random bytes (Standard Webhooks). They are stored in Kafka only
as Fernet tokens under a key from configuration (``CPEVENTS_SECRET_KEY``).
"""

from __future__ import annotations

import base64
import secrets as _random

from cryptography.fernet import Fernet, InvalidToken

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


class SecretBox:
    """Encrypts and decrypts webhook secrets with one configured key."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError):
            # Never echo the key itself.
            raise ValueError(
                "CPEVENTS_SECRET_KEY: must be a urlsafe-base64 32-byte key "
                "(make one with `cpevents keygen`)"
            ) from None

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "secret: cannot be decrypted with the configured CPEVENTS_SECRET_KEY"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
