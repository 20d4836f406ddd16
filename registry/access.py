"""Who may do what over HTTP. With an auth file (``CPEVENTS_REGISTRY_AUTH_FILE``) every request
but the health probes must carry HTTP Basic credentials of one of its users (else 401, 40101),
and handlers check the user's permissions (else 403, 40301) with the helpers below, which
name Karapace's resources: ``Subject:<name>`` and ``Config:``. Without an auth file (the
registry then listens on loopback only) nothing is checked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from aiohttp import web

from registry import errors
from registry.auth import (
    CONFIG_RESOURCE,
    AuthFileWatcher,
    Authorizer,
    Operation,
    User,
    subject_resource,
)
from registry.http import Handler

AUTH_KEY = web.AppKey("auth", AuthFileWatcher)
USER_KEY = web.RequestKey("user", User)
AUTHORIZER_KEY = web.RequestKey("authorizer", Authorizer)
# Liveness and readiness probes (Docker, Kubernetes) carry no credentials.
OPEN_PATHS = frozenset({"/", "/_health"})


def _credentials(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization")
    if header is None:
        raise errors.unauthorized("Unauthorized: HTTP Basic credentials required")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise errors.unauthorized("Unauthorized: only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.unauthorized("Unauthorized: malformed Basic credentials") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise errors.unauthorized("Unauthorized: malformed Basic credentials")
    return username, password


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the request's user when the registry has an auth file."""
    watcher = request.app.get(AUTH_KEY)
    if watcher is None or request.path in OPEN_PATHS:
        return await handler(request)
    authorizer = watcher.current()
    username, password = _credentials(request)
    # A password hash takes tens of milliseconds: not on the event loop.
    user = await asyncio.to_thread(authorizer.authenticate, username, password)
    if user is None:
        # Same answer for an unknown user and a wrong password: names are not disclosed.
        raise errors.unauthorized("Unauthorized: unknown user or wrong password")
    request[USER_KEY] = user
    request[AUTHORIZER_KEY] = authorizer  # one version of the file for the whole request
    return await handler(request)


def _identity(request: web.Request) -> tuple[Authorizer, User] | None:
    """The request's authorizer and user, None when the registry has no auth file."""
    if request.app.get(AUTH_KEY) is None:
        return None
    user = request.get(USER_KEY)
    authorizer = request.get(AUTHORIZER_KEY)
    if user is None or authorizer is None:  # a handler on an open path asked: refuse
        raise errors.unauthorized()
    return authorizer, user


def require(request: web.Request, operation: Operation, resource: str) -> None:
    """403 (40301) unless the request's user may do ``operation`` on ``resource``."""
    identity = _identity(request)
    if identity is None:
        return
    authorizer, user = identity
    if not authorizer.allowed(user, operation, resource):
        raise errors.forbidden(
            f"User '{user.username}' is denied operation {operation.value} on {resource}"
        )


def require_subject(request: web.Request, operation: Operation, subject: str) -> None:
    require(request, operation, subject_resource(subject))


def require_config(request: web.Request, operation: Operation) -> None:
    """The global config and mode: Karapace's ``Config:`` resource."""
    require(request, operation, CONFIG_RESOURCE)


def require_admin(request: web.Request, what: str) -> None:
    """403 unless the user is an admin (``Write`` on ``Config:``), for operations that cannot
    be undone or that switch the registry's protection off."""
    identity = _identity(request)
    if identity is None:
        return
    authorizer, user = identity
    if not authorizer.is_admin(user):
        raise errors.forbidden(
            f"User '{user.username}' is denied {what}: it needs Write on {CONFIG_RESOURCE} (admin)"
        )


def may_read_subject(request: web.Request, subject: str) -> bool:
    """Whether the user may read ``subject`` (for filtering lists)."""
    identity = _identity(request)
    if identity is None:
        return True
    authorizer, user = identity
    return authorizer.allowed(user, Operation.READ, subject_resource(subject))


def may_read_any(request: web.Request, subjects: list[str]) -> bool:
    """Whether the user may read at least one of ``subjects``."""
    identity = _identity(request)
    if identity is None:
        return True
    authorizer, user = identity
    return authorizer.allowed_any(user, Operation.READ, [subject_resource(s) for s in subjects])
