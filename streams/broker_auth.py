"""The Kafka security settings for Faust's aiokafka driver, which reads no librdkafka properties:
``broker_credentials`` (SASL and/or TLS) and the few ``CPEVENTS_KAFKA_CONFIG`` properties that
have an aiokafka equivalent. Any other property is refused at start: dropping it silently could
leave the router connecting differently (or less securely) than every other client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from plumbing.kafka.security import (
    Scalar,
    extra_properties,
    ssl_context,
    uses_sasl,
    uses_tls,
)
from plumbing.settings import Settings


class UnsupportedKafkaProperty(ValueError):
    """A ``CPEVENTS_KAFKA_CONFIG`` property the streams worker's driver cannot honour."""


def _millis_to_seconds(*names: str) -> Callable[[Scalar], dict[str, Any]]:
    return lambda value: {name: int(value) / 1000 for name in names}


def _millis(*names: str) -> Callable[[Scalar], dict[str, Any]]:
    return lambda value: {name: int(value) for name in names}


# librdkafka property → Faust settings. Kept small and explicit on purpose: each entry is a
# property whose meaning is the same in aiokafka.
FAUST_EQUIVALENTS: dict[str, Callable[[Scalar], dict[str, Any]]] = {
    "client.id": lambda value: {"broker_client_id": str(value)},
    "request.timeout.ms": _millis_to_seconds("broker_request_timeout"),
    "metadata.max.age.ms": _millis("consumer_metadata_max_age_ms", "producer_metadata_max_age_ms"),
    "connections.max.idle.ms": _millis(
        "consumer_connections_max_idle_ms", "producer_connections_max_idle_ms"
    ),
    "compression.type": lambda value: {"producer_compression_type": str(value)},
    # Honoured by plumbing.kafka.security.ssl_context (check_hostname), as librdkafka does.
    "ssl.endpoint.identification.algorithm": lambda value: {},
    # Both manage the same settings and repeat them with the same value (checked at start).
    **{
        key: lambda value: {}
        for key in (
            "bootstrap.servers",
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.key.password",
        )
    },
}


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust ``broker_credentials`` for the settings' security protocol (None: PLAINTEXT).

    Faust maps them to aiokafka's ``security_protocol``, ``sasl_mechanism`` (PLAIN,
    SCRAM-SHA-256 and SCRAM-SHA-512 pass through unchanged), ``sasl_plain_username``/
    ``sasl_plain_password`` and ``ssl_context``; SASLCredentials is SASL_SSL exactly when it has
    an ``ssl_context``.
    """
    context = ssl_context(settings)
    if uses_sasl(settings):
        password = settings.kafka_sasl_password
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if uses_tls(settings):
        return SSLCredentials(context)
    return None


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Faust app settings for Kafka security and ``CPEVENTS_KAFKA_CONFIG``.

    Raises :class:`UnsupportedKafkaProperty` naming each property without an equivalent.
    """
    extra = extra_properties(settings)
    unsupported = sorted(key for key in extra if key not in FAUST_EQUIVALENTS)
    if unsupported:
        raise UnsupportedKafkaProperty(
            f"CPEVENTS_KAFKA_CONFIG: {', '.join(map(repr, unsupported))} "
            f"{'has' if len(unsupported) == 1 else 'have'} no equivalent in the streams worker's "
            "Kafka driver (aiokafka), so `cpevents worker streams` would connect differently "
            "from the other clients; remove "
            f"{'it' if len(unsupported) == 1 else 'them'} for this worker. Supported: "
            + ", ".join(sorted(FAUST_EQUIVALENTS))
        )
    options: dict[str, Any] = {}
    for key, value in extra.items():
        try:
            options.update(FAUST_EQUIVALENTS[key](value))
        except ValueError:
            raise UnsupportedKafkaProperty(
                f"CPEVENTS_KAFKA_CONFIG: {key!r} must be a number of milliseconds"
            ) from None
    credentials = broker_credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    return options
