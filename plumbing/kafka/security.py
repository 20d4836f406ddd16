"""How every Kafka client authenticates and encrypts: the ``CPEVENTS_KAFKA_*`` security settings
turned into librdkafka properties (and an ``ssl.SSLContext`` for Python clients), and the checks
that refuse inconsistent combinations at start rather than letting a client fall back to
PLAINTEXT or retry forever.

Error messages name the environment variables, never their values: a value may be a secret.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plumbing.settings import Settings

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# librdkafka properties a dedicated setting manages. CPEVENTS_KAFKA_CONFIG may repeat them only
# with the same value: two sources for one property would leave the Faust worker (which reads
# only the settings) and the librdkafka clients with different security.
MANAGED_PROPERTIES: dict[str, str] = {
    "bootstrap.servers": "CPEVENTS_BOOTSTRAP_SERVERS",
    "security.protocol": "CPEVENTS_KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "CPEVENTS_KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "CPEVENTS_KAFKA_SASL_MECHANISM",
    "sasl.username": "CPEVENTS_KAFKA_SASL_USERNAME",
    "sasl.password": "CPEVENTS_KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "CPEVENTS_KAFKA_SSL_CA_LOCATION",
    "ssl.certificate.location": "CPEVENTS_KAFKA_SSL_CERTIFICATE_LOCATION",
    "ssl.key.location": "CPEVENTS_KAFKA_SSL_KEY_LOCATION",
    "ssl.key.password": "CPEVENTS_KAFKA_SSL_KEY_PASSWORD",
}

# Properties the client helpers set for the platform's delivery guarantees (no loss, no
# duplicates from retries, commit after work is durable): never overridable from outside.
GUARANTEE_PROPERTIES = frozenset(
    {"acks", "enable.idempotence", "enable.auto.commit", "isolation.level", "group.id"}
)

Scalar = str | int | float | bool


class KafkaSecurityError(ValueError):
    """The Kafka security settings are inconsistent; the message names the settings."""


def uses_sasl(settings: Settings) -> bool:
    """Whether the configured protocol authenticates with SASL."""
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def uses_tls(settings: Settings) -> bool:
    """Whether the configured protocol encrypts with TLS."""
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def security_properties(settings: Settings) -> dict[str, Any]:
    """The librdkafka security properties of ``settings`` (with the secrets in clear: pass the
    result to a client, never to a log)."""
    props: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        props["sasl.mechanism"] = settings.kafka_sasl_mechanism
        props["sasl.username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            props["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if uses_tls(settings):
        files = {
            "ssl.ca.location": settings.kafka_ssl_ca_location,
            "ssl.certificate.location": settings.kafka_ssl_certificate_location,
            "ssl.key.location": settings.kafka_ssl_key_location,
        }
        props.update({key: str(path) for key, path in files.items() if path is not None})
        if settings.kafka_ssl_key_password is not None:
            props["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return props


def extra_properties(settings: Settings) -> dict[str, Scalar]:
    """The librdkafka properties of ``CPEVENTS_KAFKA_CONFIG`` (validated at start)."""
    if settings.kafka_config is None:
        return {}
    return _parse_extra(settings.kafka_config.get_secret_value())


def _parse_extra(text: str) -> dict[str, Scalar]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text may hold secrets (e.g. an OAuth client secret).
        raise KafkaSecurityError(
            f"CPEVENTS_KAFKA_CONFIG is not valid JSON (line {exc.lineno}, column {exc.colno}); "
            'it must be a JSON object of librdkafka properties, e.g. {"client.id": "cpevents"}'
        ) from None
    if not isinstance(value, dict):
        raise KafkaSecurityError(
            "CPEVENTS_KAFKA_CONFIG must be a JSON object of librdkafka properties, "
            f"not a JSON {type(value).__name__}"
        )
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise KafkaSecurityError(
                f"CPEVENTS_KAFKA_CONFIG: property {key!r} must be a string, number or boolean"
            )
    return value


def validate(settings: Settings) -> None:
    """Refuse combinations that would connect insecurely, or not at all, naming the settings."""
    _validate_sasl(settings)
    _validate_tls(settings)
    _validate_extra(settings)


def _validate_sasl(settings: Settings) -> None:
    protocol = settings.kafka_security_protocol
    if uses_sasl(settings):
        missing = [
            name
            for name, value in (
                ("CPEVENTS_KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
                ("CPEVENTS_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
                ("CPEVENTS_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            raise KafkaSecurityError(
                f"CPEVENTS_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}"
            )
        return
    given = [
        name
        for name, value in (
            ("CPEVENTS_KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
            ("CPEVENTS_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
            ("CPEVENTS_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
        )
        if value
    ]
    if given:
        raise KafkaSecurityError(
            f"{', '.join(given)} set, but CPEVENTS_KAFKA_SECURITY_PROTOCOL={protocol} does not "
            "use SASL: set it to SASL_SSL (or SASL_PLAINTEXT)"
        )


def _validate_tls(settings: Settings) -> None:
    files = {
        "CPEVENTS_KAFKA_SSL_CA_LOCATION": settings.kafka_ssl_ca_location,
        "CPEVENTS_KAFKA_SSL_CERTIFICATE_LOCATION": settings.kafka_ssl_certificate_location,
        "CPEVENTS_KAFKA_SSL_KEY_LOCATION": settings.kafka_ssl_key_location,
    }
    given = [name for name, path in files.items() if path is not None]
    if settings.kafka_ssl_key_password is not None:
        given.append("CPEVENTS_KAFKA_SSL_KEY_PASSWORD")
    if given and not uses_tls(settings):
        raise KafkaSecurityError(
            f"{', '.join(given)} set, but CPEVENTS_KAFKA_SECURITY_PROTOCOL="
            f"{settings.kafka_security_protocol} does not use TLS: set it to SSL or SASL_SSL"
        )
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            raise KafkaSecurityError(f"{name}: {path} is not a readable file")
    has_cert = settings.kafka_ssl_certificate_location is not None
    has_key = settings.kafka_ssl_key_location is not None
    if has_cert != has_key:
        raise KafkaSecurityError(
            "a client certificate needs both CPEVENTS_KAFKA_SSL_CERTIFICATE_LOCATION and "
            "CPEVENTS_KAFKA_SSL_KEY_LOCATION"
        )
    if settings.kafka_ssl_key_password is not None and not has_key:
        raise KafkaSecurityError(
            "CPEVENTS_KAFKA_SSL_KEY_PASSWORD set without CPEVENTS_KAFKA_SSL_KEY_LOCATION"
        )


def _validate_extra(settings: Settings) -> None:
    extra = extra_properties(settings)
    managed = {"bootstrap.servers": settings.bootstrap_servers, **security_properties(settings)}
    managed["sasl.mechanisms"] = managed.get("sasl.mechanism")
    for key, value in extra.items():
        if key in GUARANTEE_PROPERTIES:
            raise KafkaSecurityError(
                f"CPEVENTS_KAFKA_CONFIG cannot set {key!r}: the platform's delivery guarantees "
                "depend on the value the client helpers give it"
            )
        setting = MANAGED_PROPERTIES.get(key)
        if setting is not None and str(value) != str(managed.get(key)):
            raise KafkaSecurityError(
                f"CPEVENTS_KAFKA_CONFIG sets {key!r}, which {setting} manages (and it differs "
                f"from that setting): set {setting} instead"
            )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client ``SSLContext`` for Python Kafka clients (aiokafka): verifies the broker against
    ``CPEVENTS_KAFKA_SSL_CA_LOCATION`` (else the system CAs), presents the client certificate if
    one is configured. None when the protocol does not use TLS."""
    if not uses_tls(settings):
        return None
    ca = settings.kafka_ssl_ca_location
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    # The librdkafka property that turns off host name verification (e.g. for brokers reached
    # through a tunnel); the Python clients must verify exactly as librdkafka does.
    algorithm = extra_properties(settings).get("ssl.endpoint.identification.algorithm", "https")
    if str(algorithm).lower() == "none":
        context.check_hostname = False
    if settings.kafka_ssl_certificate_location is not None:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certificate_location),
            str(settings.kafka_ssl_key_location),
            password=password.get_secret_value() if password is not None else None,
        )
    return context


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the values of secret properties replaced, for logs and messages."""
    return {key: "********" if _is_secret_property(key) else value for key, value in config.items()}


def _is_secret_property(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("password", "secret", "jaas", "token", "user.info"))
