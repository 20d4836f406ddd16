"""Users and permissions of the registry, from an auth file in Karapace's format
(``CPEVENTS_REGISTRY_AUTH_FILE``), so a file written for Karapace works here and back::

    {
      "users": [
        {"username": "router", "algorithm": "scrypt", "salt": "...", "password_hash": "..."}
      ],
      "permissions": [
        {"username": "router", "operation": "Read", "resource": "Subject:ctrlplane\\\\..*"}
      ]
    }

Passwords are stored as Karapace hashes them: ``scrypt`` (n=16384, r=8, p=1) or PBKDF2-HMAC
``sha1``/``sha256``/``sha512`` (``iterations``, 5000 when absent as in older Karapace files), of
the UTF-8 password with the UTF-8 salt, base64-encoded. A permission's ``resource`` is a regular
expression that must match the whole resource name (as Karapace does since it stopped accepting
prefixes): ``Subject:<subject name>`` or ``Config:`` (the global config and mode). ``Write``
implies ``Read``. ``Write`` on ``Config:`` is also the admin right: permanent deletes and
compatibility ``NONE`` need it (Karapace has no separate admin notion; a Karapace superuser,
``"resource": ".*"``, has it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_RESOURCE = "Config:"
SUBJECT_PREFIX = "Subject:"
LEGACY_PBKDF2_ITERATIONS = 5000  # what Karapace used before it wrote ``iterations``
SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1
_CACHE_SIZE = 1024


class AuthFileError(ValueError):
    """The auth file cannot be used; the message names the file and the field."""


class HashAlgorithm(StrEnum):
    """Karapace's password hash algorithms."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"
    SCRYPT = "scrypt"


class Operation(StrEnum):
    """Karapace's operations: ``Write`` implies ``Read``."""

    READ = "Read"
    WRITE = "Write"


def hash_password(
    algorithm: HashAlgorithm, salt: str, password: str, iterations: int | None = None
) -> str:
    """The base64 hash Karapace stores for ``password`` (``iterations``: PBKDF2 only)."""
    secret, salt_bytes = password.encode(), salt.encode()
    if algorithm is HashAlgorithm.SCRYPT:
        digest = hashlib.scrypt(secret, salt=salt_bytes, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    else:
        rounds = iterations if iterations is not None else LEGACY_PBKDF2_ITERATIONS
        digest = hashlib.pbkdf2_hmac(algorithm.value, secret, salt_bytes, rounds)
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class User:
    """One user of the auth file; the hash never appears in a repr (logs, tracebacks)."""

    username: str
    algorithm: HashAlgorithm
    salt: str = field(repr=False)
    password_hash: str = field(repr=False)
    iterations: int | None = None

    def verify(self, password: str) -> bool:
        """Whether ``password`` is this user's, compared in constant time."""
        computed = hash_password(self.algorithm, self.salt, password, self.iterations)
        return hmac.compare_digest(computed.encode(), self.password_hash.encode())


@dataclass(frozen=True)
class Permission:
    """``username`` may do ``operation`` on the resources ``resource`` matches entirely."""

    username: str
    operation: Operation
    resource: re.Pattern[str]

    def allows(self, username: str, operation: Operation, resources: list[str]) -> bool:
        if username != self.username:
            return False
        if operation is Operation.WRITE and self.operation is not Operation.WRITE:
            return False
        return any(self.resource.fullmatch(resource) for resource in resources)


def subject_resource(subject: str) -> str:
    return SUBJECT_PREFIX + subject


class Authorizer:
    """Checks credentials and permissions against one loaded auth file."""

    def __init__(self, users: dict[str, User], permissions: list[Permission]) -> None:
        self.users = users
        self.permissions = permissions
        # HTTP Basic sends the password with every request and scrypt costs ~50 ms: a verified
        # (user, password) is remembered as a keyed digest (never the password itself), for
        # this process and this version of the file only.
        self._cache_key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()  # authenticate runs in worker threads

    def authenticate(self, username: str, password: str) -> User | None:
        """The user whose password this is, else None. Slow (a password hash) unless the same
        credentials were verified before; call it off the event loop."""
        user = self.users.get(username)
        token = hmac.new(
            self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256
        ).digest()
        with self._lock:
            if user is not None and token in self._verified:
                return user
        if user is None:
            # Hash anyway, so an unknown name takes as long as a wrong password.
            hash_password(HashAlgorithm.SCRYPT, "unknown-user", password)
            return None
        if not user.verify(password):
            return None
        with self._lock:
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified.add(token)
        return user

    def allowed(self, user: User, operation: Operation, resource: str) -> bool:
        """Whether ``user`` may do ``operation`` on ``resource`` (e.g. ``Subject:orders``)."""
        return self.allowed_any(user, operation, [resource])

    def allowed_any(self, user: User, operation: Operation, resources: list[str]) -> bool:
        """Whether ``user`` may do ``operation`` on at least one of ``resources``."""
        return any(p.allows(user.username, operation, resources) for p in self.permissions)

    def is_admin(self, user: User) -> bool:
        """Admin: ``Write`` on ``Config:`` (permanent deletes, compatibility NONE)."""
        return self.allowed(user, Operation.WRITE, CONFIG_RESOURCE)


# -- reading the file ---------------------------------------------------------------------------


def _field(item: object, where: str, name: str, kind: type) -> Any:
    if not isinstance(item, dict):
        raise AuthFileError(f"{where}: a JSON object expected")
    if name not in item:
        raise AuthFileError(f"{where}.{name}: missing")
    value = item[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AuthFileError(f"{where}.{name}: {kind.__name__} expected, got {type(value).__name__}")
    return value


def _choice(value: str, where: str, kind: type[StrEnum]) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise AuthFileError(f"{where}: {value!r} is not one of {choices}") from None


def _user(item: object, where: str) -> User:
    iterations = item.get("iterations") if isinstance(item, dict) else None
    if iterations is not None and (
        not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1
    ):
        raise AuthFileError(f"{where}.iterations: a positive integer expected")
    return User(
        username=_field(item, where, "username", str),
        algorithm=_choice(
            _field(item, where, "algorithm", str), f"{where}.algorithm", HashAlgorithm
        ),
        salt=_field(item, where, "salt", str),
        password_hash=_field(item, where, "password_hash", str),
        iterations=iterations,
    )


def _permission(item: object, where: str) -> Permission:
    operation = _choice(_field(item, where, "operation", str), f"{where}.operation", Operation)
    pattern = _field(item, where, "resource", str)
    try:
        resource = re.compile(pattern)
    except re.error as exc:
        raise AuthFileError(f"{where}.resource: not a regular expression: {exc}") from None
    return Permission(_field(item, where, "username", str), operation, resource)


def parse_auth_data(document: object) -> Authorizer:
    """An authorizer from the parsed JSON of an auth file; AuthFileError naming the field."""
    if not isinstance(document, dict):
        raise AuthFileError("a JSON object with 'users' and 'permissions' expected")
    for name in ("users", "permissions"):
        if not isinstance(document.get(name), list):
            raise AuthFileError(f"{name}: a list expected")
    users: dict[str, User] = {}
    for index, item in enumerate(document["users"]):
        user = _user(item, f"users[{index}]")
        if user.username in users:
            raise AuthFileError(f"users[{index}].username: {user.username!r} appears twice")
        users[user.username] = user
    permissions = [
        _permission(item, f"permissions[{index}]")
        for index, item in enumerate(document["permissions"])
    ]
    return Authorizer(users, permissions)


def load_auth_file(path: Path) -> Authorizer:
    """The authorizer of the auth file at ``path``; AuthFileError naming the file and field."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthFileError(f"auth file {path}: cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"auth file {path}: not JSON: {exc}") from None
    try:
        return parse_auth_data(document)
    except AuthFileError as exc:
        raise AuthFileError(f"auth file {path}: {exc}") from None


class AuthFileWatcher:
    """The auth file's current authorizer, reloaded when the file changes (checked at most once
    per ``interval``), so ``cpevents registry add-user`` takes effect without a restart. A file
    that no longer loads is reported and the previous users and permissions stay in force."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self._interval = interval
        self._stamp = self._file_stamp()
        self._authorizer = load_auth_file(path)
        self._checked = time.monotonic()
        log.info(
            "registry: %d users, %d permissions from %s",
            len(self._authorizer.users),
            len(self._authorizer.permissions),
            path,
        )

    def current(self) -> Authorizer:
        now = time.monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._authorizer = load_auth_file(self.path)
                except AuthFileError as exc:
                    log.warning("registry: keeping the previous users and permissions: %s", exc)
                else:
                    log.info("registry: reloaded %s", self.path)
        return self._authorizer

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


# -- writing the file (cpevents registry add-user) ----------------------------------------------


def subject_permission(regex: str) -> str:
    """The resource for subjects matching ``regex``: grouped, so that ``a|b`` means subject
    ``a`` or ``b`` rather than ``Subject:a`` or a resource named ``b``."""
    try:
        re.compile(regex)
    except re.error as exc:
        raise AuthFileError(f"{regex!r} is not a regular expression: {exc}") from None
    return f"{SUBJECT_PREFIX}(?:{regex})"


def add_user(
    path: Path,
    username: str,
    password: str,
    *,
    read: Sequence[str] = (),
    write: Sequence[str] = (),
    admin: bool = False,
) -> bool:
    """Add ``username`` (or give it a new password) with permissions to read and write the
    subjects matching the ``read`` / ``write`` regexes (``admin``: write everything, including
    ``Config:``), creating the file if missing. Other users and permissions are kept as they
    are. The password is hashed with scrypt and a random salt. Returns True if the user is new.
    """
    if not username or ":" in username:
        raise AuthFileError("username: must be non-empty and without ':' (HTTP Basic splits there)")
    if not password:
        raise AuthFileError("password: must not be empty")
    grants = [(Operation.READ.value, subject_permission(r)) for r in read]
    grants += [(Operation.WRITE.value, subject_permission(r)) for r in write]
    if admin:
        grants += [(Operation.WRITE.value, CONFIG_RESOURCE), (Operation.WRITE.value, "Subject:.*")]
    document: dict[str, Any] = {"users": [], "permissions": []}
    if path.exists():
        load_auth_file(path)  # never rewrite (and lose) a file we cannot read
        document = json.loads(path.read_text(encoding="utf-8"))
    salt = secrets.token_urlsafe(16)
    entry = {
        "username": username,
        "algorithm": HashAlgorithm.SCRYPT.value,
        "salt": salt,
        "password_hash": hash_password(HashAlgorithm.SCRYPT, salt, password),
    }
    users: list[dict[str, Any]] = document["users"]
    existing = [i for i, user in enumerate(users) if user["username"] == username]
    if existing:
        users[existing[0]] = entry
    else:
        users.append(entry)
    permissions: list[dict[str, Any]] = document["permissions"]
    for operation, resource in grants:
        grant = {"username": username, "operation": operation, "resource": resource}
        if grant not in permissions:
            permissions.append(grant)
    _write_private(path, json.dumps(document, indent=2) + "\n")
    return not existing


def _write_private(path: Path, text: str) -> None:
    # Readable by the owner only (password hashes), and replaced atomically so that a running
    # registry never reloads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
