"""The registry's auth file without a server: Karapace's format and hashes, errors naming the
field, permission matching, ``add-user`` writing the file, and the loopback-only rule."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cpevents.cli import app
from plumbing.settings import Settings
from registry.auth import (
    AuthFileError,
    HashAlgorithm,
    Operation,
    add_user,
    hash_password,
    load_auth_file,
    parse_auth_data,
)
from registry.server import InsecureBindError, check_exposure, is_loopback


def karapace_user(username: str, password: str, algorithm: str = "scrypt", **extra: Any) -> Any:
    """A user entry as ``karapace_mkpasswd`` writes it, hashed here with hashlib directly."""
    salt = f"salt-of-{username}"
    if algorithm == "scrypt":
        digest = hashlib.scrypt(password.encode(), salt=salt.encode(), n=16384, r=8, p=1)
    else:
        rounds = extra.get("iterations", 5000)
        digest = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt.encode(), rounds)
    return {
        "username": username,
        "algorithm": algorithm,
        "salt": salt,
        "password_hash": base64.b64encode(digest).decode(),
        **extra,
    }


KARAPACE_FILE = {
    "users": [
        karapace_user("admin", "admin-pw"),
        karapace_user("legacy", "legacy-pw", "sha512"),
        karapace_user("modern", "modern-pw", "sha256", iterations=1000),
        karapace_user("reader", "reader-pw"),
    ],
    "permissions": [
        {"username": "admin", "operation": "Write", "resource": ".*"},
        {"username": "reader", "operation": "Read", "resource": "Subject:orders"},
        {"username": "modern", "operation": "Write", "resource": "Subject:team-.*"},
    ],
}


def test_karapace_files_and_hashes_are_accepted() -> None:
    authorizer = parse_auth_data(KARAPACE_FILE)
    for name, password in [
        ("admin", "admin-pw"),
        ("legacy", "legacy-pw"),  # sha512 without iterations: Karapace's old 5000
        ("modern", "modern-pw"),
        ("reader", "reader-pw"),
    ]:
        user = authorizer.authenticate(name, password)
        assert user is not None and user.username == name
        assert authorizer.authenticate(name, password + "x") is None
    assert authorizer.authenticate("nobody", "admin-pw") is None


def test_a_remembered_login_does_not_let_another_password_in() -> None:
    authorizer = parse_auth_data(KARAPACE_FILE)
    assert authorizer.authenticate("reader", "reader-pw") is not None
    assert authorizer.authenticate("reader", "reader-pw") is not None  # from the cache
    assert authorizer.authenticate("reader", "admin-pw") is None
    assert authorizer.authenticate("admin", "reader-pw") is None


def test_hashes_never_show_in_reprs() -> None:
    user = parse_auth_data(KARAPACE_FILE).users["reader"]
    assert user.password_hash not in repr(user) and user.salt not in repr(user)


def test_hash_password_is_karapaces() -> None:
    expected = karapace_user("u", "pw")["password_hash"]
    assert hash_password(HashAlgorithm.SCRYPT, "salt-of-u", "pw") == expected
    expected = karapace_user("u", "pw", "sha1")["password_hash"]
    assert hash_password(HashAlgorithm.SHA1, "salt-of-u", "pw") == expected


def test_permissions_match_whole_resources_and_write_implies_read() -> None:
    authorizer = parse_auth_data(KARAPACE_FILE)
    reader, modern, admin = (authorizer.users[n] for n in ("reader", "modern", "admin"))
    assert authorizer.allowed(reader, Operation.READ, "Subject:orders")
    # The whole name must match: no prefix grants (Karapace's fullmatch).
    assert not authorizer.allowed(reader, Operation.READ, "Subject:orders-secret")
    assert not authorizer.allowed(reader, Operation.WRITE, "Subject:orders")
    assert authorizer.allowed(modern, Operation.READ, "Subject:team-a")
    assert authorizer.allowed(modern, Operation.WRITE, "Subject:team-a")
    assert not authorizer.allowed(modern, Operation.READ, "Config:")
    assert authorizer.allowed_any(reader, Operation.READ, ["Subject:x", "Subject:orders"])
    assert not authorizer.allowed_any(reader, Operation.READ, [])
    assert authorizer.is_admin(admin)
    assert not authorizer.is_admin(modern) and not authorizer.is_admin(reader)


def _broken(path: str, value: object) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(KARAPACE_FILE))
    section, index, field = path.split(".")
    if value is ...:
        del document[section][int(index)][field]
    else:
        document[section][int(index)][field] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "a JSON object with 'users' and 'permissions' expected"),
        ({"users": []}, "permissions: a list expected"),
        ({"users": {}, "permissions": []}, "users: a list expected"),
        (_broken("users.1.algorithm", "md5"), "users[1].algorithm: 'md5' is not one of sha1"),
        (_broken("users.0.password_hash", ...), "users[0].password_hash: missing"),
        (_broken("users.2.salt", 7), "users[2].salt: str expected, got int"),
        (_broken("users.2.iterations", 0), "users[2].iterations: a positive integer"),
        (_broken("users.3.username", "admin"), "users[3].username: 'admin' appears twice"),
        (_broken("permissions.1.operation", "Delete"), "permissions[1].operation: 'Delete'"),
        (_broken("permissions.2.resource", "Subject:("), "permissions[2].resource: not a regular"),
    ],
)
def test_file_errors_name_the_field(document: object, message: str) -> None:
    with pytest.raises(AuthFileError) as error:
        parse_auth_data(document)
    assert message in str(error.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(AuthFileError, match=f"auth file {missing}: cannot be read"):
        load_auth_file(missing)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{nope")
    with pytest.raises(AuthFileError, match=f"auth file {garbage}: not JSON"):
        load_auth_file(garbage)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_broken("users.0.algorithm", "md5")))
    with pytest.raises(AuthFileError, match=r"bad.json: users\[0\].algorithm"):
        load_auth_file(bad)


def test_add_user_creates_a_private_file_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "users.json"
    assert add_user(path, "router", "pw-1", read=["ctrlplane\\..*"], write=["a|b"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert add_user(path, "ops", "pw-2", admin=True)
    document = json.loads(path.read_text())
    assert [u["username"] for u in document["users"]] == ["router", "ops"]
    assert all(u["algorithm"] == "scrypt" and "pw-" not in json.dumps(u) for u in document["users"])

    authorizer = load_auth_file(path)
    router = authorizer.authenticate("router", "pw-1")
    assert router is not None
    assert authorizer.allowed(router, Operation.READ, "Subject:ctrlplane.events-value")
    assert not authorizer.allowed(router, Operation.WRITE, "Subject:ctrlplane.events-value")
    # The regex is grouped: ``a|b`` is the subjects a and b, not "Subject:a" or "b".
    assert authorizer.allowed(router, Operation.WRITE, "Subject:b")
    assert not authorizer.allowed(router, Operation.WRITE, "b")
    ops = authorizer.authenticate("ops", "pw-2")
    assert ops is not None and authorizer.is_admin(ops)
    assert authorizer.allowed(ops, Operation.WRITE, "Subject:anything")

    # Again: a new password, the same permissions once, the other user untouched.
    assert not add_user(path, "router", "pw-3", read=["ctrlplane\\..*"])
    again = load_auth_file(path)
    assert again.authenticate("router", "pw-1") is None
    assert again.authenticate("router", "pw-3") is not None
    assert again.authenticate("ops", "pw-2") is not None
    assert len(again.permissions) == len(authorizer.permissions)


@pytest.mark.parametrize(
    ("username", "password", "regex", "message"),
    [
        ("a:b", "pw", ".*", "without ':'"),
        ("", "pw", ".*", "non-empty"),
        ("a", "", ".*", "password: must not be empty"),
        ("a", "pw", "(", "'(' is not a regular expression"),
    ],
)
def test_add_user_refuses_bad_input(
    tmp_path: Path, username: str, password: str, regex: str, message: str
) -> None:
    path = tmp_path / "users.json"
    with pytest.raises(AuthFileError) as error:
        add_user(path, username, password, read=[regex])
    assert message in str(error.value)
    assert not path.exists()


def test_add_user_never_rewrites_a_file_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": "oops", "permissions": []}')
    with pytest.raises(AuthFileError, match="users: a list expected"):
        add_user(path, "a", "pw")
    assert path.read_text() == '{"users": "oops", "permissions": []}'


def test_add_user_command_reads_the_password_from_stdin_and_never_prints_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    result = CliRunner().invoke(
        app,
        ["registry", "add-user", str(path), "svc", "--write", "ctrlplane\\..*", "--password-stdin"],
        input="correct horse\n",
    )
    assert result.exit_code == 0, result.output
    assert "correct horse" not in result.output and "svc" in result.output
    user = load_auth_file(path).authenticate("svc", "correct horse")
    assert user is not None
    failed = CliRunner().invoke(
        app, ["registry", "add-user", str(path), "x", "--password-stdin"], input="\n"
    )
    assert failed.exit_code == 1


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "192.0.2.1"):
        assert not is_loopback(host), host


def test_without_an_auth_file_only_loopback_is_served(tmp_path: Path) -> None:
    open_settings = Settings(bootstrap_servers="127.0.0.1:9092")
    assert check_exposure(open_settings, "127.0.0.1") is None
    with pytest.raises(InsecureBindError, match="CPEVENTS_REGISTRY_AUTH_FILE"):
        check_exposure(open_settings, "0.0.0.0")
    path = tmp_path / "users.json"
    add_user(path, "a", "pw", read=[".*"])
    secured = Settings(bootstrap_servers="127.0.0.1:9092", registry_auth_file=path)
    watcher = check_exposure(secured, "0.0.0.0")
    assert watcher is not None and set(watcher.current().users) == {"a"}
    with pytest.raises(AuthFileError, match="cannot be read"):
        check_exposure(Settings(registry_auth_file=tmp_path / "nope.json"), "127.0.0.1")
