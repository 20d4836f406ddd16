from __future__ import annotations

import base64

import pytest

from schemas.secrets import SecretBox, generate_encryption_key, generate_secret, secret_key_bytes


def test_secrets_are_whsec_base64_of_24_to_64_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key_bytes(secret)) == 32
    assert len(base64.b64decode(generate_secret(64)[6:])) == 64
    with pytest.raises(ValueError, match="num_bytes"):
        generate_secret(8)


def test_secret_box_round_trips_and_never_shows_plaintext() -> None:
    box = SecretBox(generate_encryption_key())
    secret = generate_secret()
    token = box.encrypt(secret)
    assert secret not in token
    assert box.decrypt(token) == secret
    assert "key" in repr(box) and secret not in repr(box)


def test_wrong_key_and_bad_key_errors_do_not_leak() -> None:
    token = SecretBox(generate_encryption_key()).encrypt("whsec_abc")
    with pytest.raises(ValueError, match="cannot be decrypted") as info:
        SecretBox(generate_encryption_key()).decrypt(token)
    assert "whsec_abc" not in str(info.value)
    with pytest.raises(ValueError, match="CPEVENTS_SECRET_KEY") as bad:
        SecretBox("short-and-wrong")
    assert "short-and-wrong" not in str(bad.value)
