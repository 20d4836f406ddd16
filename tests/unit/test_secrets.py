from __future__ import annotations

import base64

import pytest

from schemas.secrets import (
    SecretBox,
    generate_encryption_key,
    generate_secret,
    rotated_key_list,
    secret_key_bytes,
)


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


def test_several_keys_the_first_encrypts_all_decrypt_and_rotate_moves_to_the_first() -> None:
    old, new = generate_encryption_key(), generate_encryption_key()
    old_token = SecretBox(old).encrypt("whsec_old")
    box = SecretBox(f"{new}, {old}")  # spaces around the commas are fine
    assert box.key_count == 2
    assert box.decrypt(old_token) == "whsec_old"
    new_token = box.encrypt("whsec_new")
    assert SecretBox(new).decrypt(new_token) == "whsec_new"  # the first key encrypted it
    moved = box.rotate(old_token)
    assert SecretBox(new).decrypt(moved) == "whsec_old"  # readable once the old key is gone
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(new).decrypt(old_token)
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(generate_encryption_key()).rotate(old_token)


def test_a_bad_key_in_a_list_is_named_by_position_never_shown() -> None:
    good = generate_encryption_key()
    with pytest.raises(ValueError, match="key 2 of 2") as info:
        SecretBox(f"{good},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(info.value) and good not in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        SecretBox(" , ")


def test_rotated_key_list_puts_a_fresh_key_first() -> None:
    old = generate_encryption_key()
    keys = rotated_key_list(old).split(",")
    assert len(keys) == 2 and keys[1] == old and keys[0] != old
    SecretBox(",".join(keys))  # a valid CPEVENTS_SECRET_KEY
    assert rotated_key_list(f"{old},{old}", new_key=old) == old  # no duplicates
    assert len(rotated_key_list(None).split(",")) == 1


def test_keygen_rotate_prints_the_new_key_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cpevents.cli import app

    old = generate_encryption_key()
    monkeypatch.setenv("CPEVENTS_SECRET_KEY", old)
    result = CliRunner().invoke(app, ["keygen", "--rotate"])
    assert result.exit_code == 0, result.output
    keys = result.stdout.strip().split(",")
    assert len(keys) == 2 and keys[1] == old
    SecretBox(result.stdout.strip())
    plain = CliRunner().invoke(app, ["keygen"])
    assert len(plain.stdout.strip()) == 44 and "," not in plain.stdout
