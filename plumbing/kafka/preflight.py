"""The start-up check every service runs: can this process reach, authenticate with and trust
the configured Kafka cluster? Without it a wrong password or CA makes librdkafka retry forever,
logging transport errors while the service looks alive.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from plumbing.kafka.clients import admin_config, bootstrap
from plumbing.kafka.security import uses_sasl
from plumbing.settings import Settings

STARTUP_TIMEOUT = 20.0


class KafkaAccessError(RuntimeError):
    """The cluster refused this client, or did not answer; the message names the settings."""


def check_kafka_access(settings: Settings, timeout: float = STARTUP_TIMEOUT) -> None:
    """Return once the cluster answers a metadata request; raise :class:`KafkaAccessError` at
    once on an authentication or TLS failure, or after ``timeout`` without an answer."""
    errors: list[KafkaError] = []
    # log_level 0: the failure is reported once, by the exception, not by librdkafka's retries.
    admin = AdminClient(admin_config(settings, error_cb=errors.append, log_level=0))
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            if admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic()))).brokers:
                return
        except KafkaException as exc:
            last = str(exc.args[0].str()) if exc.args else str(exc)
        admin.poll(0)  # serves error_cb
        for error in errors:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                raise KafkaAccessError(describe_failure(settings, error.code(), error.str()))
        if errors:
            last = errors[-1].str()
            errors.clear()
        if time.monotonic() >= deadline:
            raise KafkaAccessError(describe_failure(settings, None, last, timeout))


def describe_failure(
    settings: Settings, code: int | None, reason: str, timeout: float = STARTUP_TIMEOUT
) -> str:
    """What went wrong, naming the settings to check (librdkafka's reasons hold no secrets)."""
    servers = bootstrap(settings)
    protocol = settings.kafka_security_protocol
    if code == KafkaError._AUTHENTICATION:
        if uses_sasl(settings):
            hint = (
                "check CPEVENTS_KAFKA_SASL_USERNAME and CPEVENTS_KAFKA_SASL_PASSWORD (and "
                f"CPEVENTS_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism})"
            )
        else:
            hint = (
                f"CPEVENTS_KAFKA_SECURITY_PROTOCOL={protocol}; the cluster may need SASL "
                "(SASL_SSL with CPEVENTS_KAFKA_SASL_USERNAME and CPEVENTS_KAFKA_SASL_PASSWORD)"
            )
        return f"Kafka at {servers} refused authentication: {reason}; {hint}"
    if code == KafkaError._SSL:
        ca = settings.kafka_ssl_ca_location
        trusted = f"CPEVENTS_KAFKA_SSL_CA_LOCATION={ca}" if ca else "the system CAs"
        return (
            f"TLS with Kafka at {servers} failed: {reason}; check CPEVENTS_KAFKA_SSL_CA_LOCATION "
            f"(the CA that signed the broker's certificate; now {trusted}) and, for mutual TLS, "
            "CPEVENTS_KAFKA_SSL_CERTIFICATE_LOCATION and CPEVENTS_KAFKA_SSL_KEY_LOCATION"
        )
    return (
        f"no metadata from Kafka at {servers} within {timeout:.0f}s ({reason}); check "
        f"CPEVENTS_BOOTSTRAP_SERVERS and CPEVENTS_KAFKA_SECURITY_PROTOCOL={protocol} (a "
        "PLAINTEXT client gets no answer from a TLS or SASL listener)"
    )
