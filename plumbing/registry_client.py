"""The configuration of a schema registry client (confluent-kafka's ``SchemaRegistryClient``)
from the settings: URL, basic auth and the CA that signed the registry's certificate; and the
start-up check that this configuration is accepted (:func:`check_registry_access`)."""

from __future__ import annotations

import ssl
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from plumbing.settings import Settings
from schemas.serde import Serde

STARTUP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 5.0


class RegistryAccessError(RuntimeError):
    """The registry refused this client, or did not answer; the message names the settings
    (never their secret values)."""


def registry_client_config(settings: Settings) -> dict[str, Any]:
    """``SchemaRegistryClient`` configuration for ``settings`` (holds the password in clear:
    pass it to the client, never to a log). Credentials in CPEVENTS_SCHEMA_REGISTRY_URL
    (``https://user:password@host``) are moved out of the URL into ``basic.auth.user.info``:
    the client's HTTP library logs every request's URL at INFO. CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH,
    when set, wins over them."""
    urls, url_user_info = [], None
    for url in settings.schema_registry_url.split(","):
        parts = urlsplit(url.strip())
        if parts.username is not None or parts.password is not None:
            url_user_info = url_user_info or f"{unquote(parts.username or '')}:" + unquote(
                parts.password or ""
            )
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        urls.append(parts.geturl())
    config: dict[str, Any] = {"url": ",".join(urls)}
    if settings.schema_registry_basic_auth is not None:
        # Only ``basic.auth.user.info``: the Python client refuses the Java client's
        # ``basic.auth.credentials.source`` as an unrecognized property.
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    elif url_user_info is not None:
        config["basic.auth.user.info"] = url_user_info
    if settings.schema_registry_ca_location is not None:
        config["ssl.ca.location"] = str(settings.schema_registry_ca_location)
    return config


def serde_for(settings: Settings) -> Serde:
    """The codecs of every model, on a registry client configured from ``settings``: every
    component builds its ``Serde`` here, so registry credentials reach all of them."""
    return Serde(registry_client_config(settings))


def check_registry_access(settings: Settings, timeout: float = STARTUP_TIMEOUT) -> None:
    """Return once the registry answers an authenticated ``GET /subjects``, through the same
    client configuration the services use; raise :class:`RegistryAccessError` at once when it
    refuses the credentials (401, 403), the TLS handshake fails or it answers another client
    error, and after ``timeout`` seconds of no answer (connection errors, 5xx: a registry still
    starting is waited for). Without this, a wrong password surfaces only at the first event,
    as a failed encode, while the service looks healthy."""
    if settings.schema_registry_url.startswith("mock://"):
        return  # confluent-kafka's in-process mock (tests): nothing to reach
    try:
        # No retries inside the client: this loop decides what is worth retrying.
        config = {**registry_client_config(settings), "timeout": REQUEST_TIMEOUT, "max.retries": 0}
        client = SchemaRegistryClient(config)
    except (ValueError, TypeError) as exc:
        raise RegistryAccessError(
            f"invalid schema registry client configuration: {_redact(str(exc), settings)}; "
            "check CPEVENTS_SCHEMA_REGISTRY_URL and CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH"
        ) from None
    deadline = time.monotonic() + timeout
    with client:
        while True:
            last = _attempt(client, settings)
            if last is None:
                return
            if time.monotonic() >= deadline:
                raise RegistryAccessError(
                    f"no answer from the schema registry at {_public_url(settings)} within "
                    f"{timeout:.0f}s ({last}); check CPEVENTS_SCHEMA_REGISTRY_URL"
                )
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _attempt(client: SchemaRegistryClient, settings: Settings) -> str | None:
    """One ``GET /subjects``: None if answered, the reason to retry, or RegistryAccessError."""
    try:
        client.get_subjects()
    except SchemaRegistryError as exc:
        status = exc.http_status_code
        if status >= 500 or status < 400:
            return f"HTTP {status}"
        raise RegistryAccessError(
            describe_registry_failure(settings, status, exc.error_message)
        ) from None
    # The client's HTTP library (httpx or httpx2, whichever is installed) raises its own
    # transport errors: recognised by the SSL error they wrap, else retried as no answer.
    except Exception as exc:
        reason = _redact(f"{type(exc).__name__}: {exc}", settings)
        if _is_tls_failure(exc):
            raise RegistryAccessError(describe_registry_failure(settings, None, reason)) from None
        return reason
    return None


def describe_registry_failure(settings: Settings, status: int | None, reason: str) -> str:
    """What the registry refused (``status`` None: the TLS handshake), naming the settings to
    check; ``reason`` (the registry's message) is redacted of the configured password."""
    url = _public_url(settings)
    reason = _redact(reason, settings)
    auth = "CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH"
    if status == 401:
        hint = (
            f"check {auth} (user:password)"
            if settings.schema_registry_basic_auth is not None or _has_userinfo(settings)
            else f"it needs credentials: set {auth}=user:password"
        )
        return f"the schema registry at {url} refused the credentials (HTTP 401: {reason}); {hint}"
    if status == 403:
        return (
            f"the schema registry at {url} denied the user of {auth} (HTTP 403: {reason}); "
            "check that user's permissions (Read, and Write to register schemas, on the subjects)"
        )
    if status is None:
        ca = settings.schema_registry_ca_location
        trusted = f"CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION={ca}" if ca else "the system CAs"
        return (
            f"TLS with the schema registry at {url} failed: {reason}; check "
            f"CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION (the CA that signed the registry's "
            f"certificate; now {trusted})"
        )
    return (
        f"the schema registry at {url} answered HTTP {status} to GET /subjects ({reason}); "
        "check CPEVENTS_SCHEMA_REGISTRY_URL (the registry's base URL)"
    )


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _has_userinfo(settings: Settings) -> bool:
    return "@" in urlsplit(settings.schema_registry_url).netloc


def _public_url(settings: Settings) -> str:
    """The registry URL without the user:password it may carry."""
    parts = urlsplit(settings.schema_registry_url)
    if "@" not in parts.netloc:
        return settings.schema_registry_url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _redact(text: str, settings: Settings) -> str:
    """``text`` without the configured registry password (nor the URL's credentials)."""
    secrets = [settings.schema_registry_url] if _has_userinfo(settings) else []
    if settings.schema_registry_basic_auth is not None:
        user_info = settings.schema_registry_basic_auth.get_secret_value()
        secrets += [user_info, user_info.partition(":")[2]]
    password = urlsplit(settings.schema_registry_url).password
    if password:
        secrets.append(password)
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
