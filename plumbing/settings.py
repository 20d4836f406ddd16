"""Configuration from ``CPEVENTS_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from plumbing.environment import check_environment
from plumbing.kafka import security as kafka_security
from schemas.topics import Topics

KAFKA_VERSION = "4.1.1"


class Settings(BaseSettings):
    """Every knob of the platform. Each field reads ``CPEVENTS_<FIELD>`` from the environment."""

    # hide_input_in_errors: a validation error must not print the input, which holds secrets.
    model_config = SettingsConfigDict(
        env_prefix="CPEVENTS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka to use; unset means the local broker of `cpevents kafka start`",
    )
    schema_registry_url: str = "http://127.0.0.1:8081"
    registry_topic: str = Field(default="_schemas", description="Compacted topic of the registry")
    # Schema registry security (registry/auth.py; owned with the registry).
    registry_auth_file: Path | None = Field(
        default=None,
        description="Users and permissions of `cpevents registry` (Karapace's auth-file JSON; "
        "create it with `cpevents registry add-user`). Unset: no authentication, and the "
        "registry only listens on loopback addresses",
    )
    registry_header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a new registry connection has to send a head"
    )
    registry_keepalive_timeout: float = Field(
        default=30.0, gt=0, description="Seconds an idle registry keep-alive connection stays"
    )
    registry_max_connections: int = Field(
        default=1024, ge=1, description="Open registry connections at most; more get 503"
    )
    topic_prefix: str = "ctrlplane."
    partitions: int = Field(default=3, ge=1, description="Default partitions for new topics")
    # Replication of new topics (plumbing/kafka/topic_admin.py decides "auto" from the
    # cluster's broker count: 3 and 2 from three brokers on, else 1 and 1).
    replication_factor: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto",
        description="Replicas of each new topic's partitions; auto: 3 on 3+ brokers, else 1",
    )
    min_insync_replicas: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto",
        description="min.insync.replicas of new topics: acks=all writes need this many "
        "replicas in sync; auto: 2 with 3+ replicas, else 1",
    )
    retry_tiers: tuple[str, ...] = Field(
        default=("5s", "5m", "30m", "2h", "5h", "10h"),
        description="Delay tiers of the retry ladder, e.g. 5s,5m,30m (Svix's ladder by default)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts webhook secrets at rest in Kafka",
    )
    admin_token: SecretStr | None = None

    # HTTP gateway (producers/gateway/).
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    tenant_tokens: SecretStr | None = Field(
        default=None,
        description='JSON object mapping bearer token to tenant id, e.g. {"tok_abc": "ten_42"}',
    )
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    secret_rotation_overlap: float = Field(
        default=24 * 3600.0, ge=0, description="Seconds the old secret stays valid after rotation"
    )

    # Delivery worker (delivery/). Durations are seconds.
    delivery_allowed_networks: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="CIDRs exempt from the SSRF guard (comma-separated or a JSON list), "
        "e.g. 127.0.0.0/8 for local development; empty means only public addresses",
    )
    delivery_concurrency: int = Field(default=512, ge=1, description="Requests in flight")
    delivery_per_endpoint_limit: int = Field(
        default=8, ge=1, description="Requests in flight to one endpoint (scheme, host, port)"
    )
    delivery_queue_wait: float = Field(
        default=1.0,
        gt=0,
        description="Seconds a task may wait for its endpoint's runners; while the oldest queued "
        "one has waited longer, new tasks for that endpoint go back to the retry tier instead",
    )
    delivery_connect_timeout: float = Field(default=5.0, gt=0)
    delivery_timeout: float = Field(default=15.0, gt=0, description="Total time of one attempt")
    delivery_max_response_bytes: int = Field(
        default=64 * 1024, ge=0, description="Response body bytes read (and kept) at most"
    )
    delivery_retry_after_cap: float = Field(
        default=3600.0, ge=0, description="Longest Retry-After delay honoured"
    )
    delivery_jitter: float = Field(
        default=0.1, ge=0, le=1, description="Retry delays are stretched by up to this fraction"
    )
    delivery_breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open an endpoint's breaker"
    )
    delivery_breaker_cooldown: float = Field(
        default=30.0, gt=0, description="How long an open breaker defers its tasks before a trial"
    )
    delivery_session_timeout: float = Field(
        default=45.0,
        ge=6,
        description="Seconds before a silent delivery worker's partitions move to the others",
    )
    delivery_disable_after: float = Field(
        default=5 * 24 * 3600.0,
        ge=0,
        description="Disable a webhook that kept failing this long without a success; 0 = never",
    )
    # Delivery hardening (issue 14)
    delivery_breaker_trials: int = Field(
        default=3, ge=1, description="Attempts a half-open breaker lets through to try again"
    )
    delivery_breaker_max_cooldown: float = Field(
        default=300.0,
        gt=0,
        description="Longest cooldown of a breaker: each failed trial doubles it up to this",
    )
    delivery_webhook_wait: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a task for a webhook not (or not yet) seen active waits for the "
        "webhook view to catch up with the webhooks topic before it is dropped",
    )

    @field_validator("delivery_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("delivery_allowed_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a CIDR (e.g. 127.0.0.0/8)") from None
        return value

    # Local broker (used when bootstrap_servers is unset and no Docker engine is reachable).
    home: Path = Field(
        default=Path.home() / ".cache" / "cpevents",
        description="Where Kafka jars, broker data and pid files live",
    )
    kafka_version: str = KAFKA_VERSION
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = Field(
        default="1g",
        description="JVM heap of the local broker; test sessions create thousands of topics",
    )

    # Kafka client security, for every client (plumbing/kafka/security.py checks combinations).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients connect to Kafka"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (with a SASL_* protocol)"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = Field(
        default=None, description="PEM file of the CA(s) that signed the brokers' certificates"
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None, description="PEM client certificate (mutual TLS)"
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None, description="PEM private key of the client certificate"
    )
    kafka_ssl_key_password: SecretStr | None = None
    kafka_config: SecretStr | None = Field(
        default=None,
        description="JSON object of further librdkafka properties for every client, e.g. "
        '{"client.id": "cpevents", "ssl.endpoint.identification.algorithm": "none"}',
    )
    # Schema registry clients (plumbing/registry_client.py).
    schema_registry_basic_auth: SecretStr | None = Field(
        default=None, description="user:password for the schema registry (HTTP basic auth)"
    )
    schema_registry_ca_location: Path | None = Field(
        default=None, description="PEM file of the CA that signed the registry's certificate"
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        # Kafka's own tools accept sasl_ssl or scram-sha-512 as well.
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_security(self) -> Self:
        check_environment(os.environ, type(self).model_fields)
        kafka_security.validate(self)
        auth = self.schema_registry_basic_auth
        if auth is not None and ":" not in auth.get_secret_value():
            raise ValueError("CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH must be user:password")
        ca = self.schema_registry_ca_location
        if ca is not None and not ca.is_file():
            raise ValueError(f"CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION: {ca} is not a readable file")
        return self

    # Limits and hardening (issue 14)
    max_event_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest encoded event (Avro, wire format) accepted by the gateway and "
        "KafkaBus; JSON escaping can make the encoding much larger than the JSON",
    )
    max_active_secrets: int = Field(
        default=3, ge=1, description="Signing secrets a webhook may have active at once"
    )
    max_webhooks_per_tenant: int = Field(default=100, ge=1)
    attempt_log_retention: float = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        description="Seconds the attempt log (webhook-deliveries) keeps a delivery's record",
    )
    gateway_header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a new connection has to send a request head"
    )
    gateway_keepalive_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an idle keep-alive connection (or one sending its next request "
        "head) stays open",
    )
    gateway_body_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a request body may take to arrive"
    )
    gateway_max_connections: int = Field(
        default=1024, ge=1, description="Open connections at most; more are answered 503"
    )
    gateway_reader_idle: float = Field(
        default=60.0,
        gt=0,
        description="Seconds without a request after which the gateway's attempt-log index "
        "(GET /v1/deliveries, retry) and the portal's feed stop reading their topics",
    )

    # Observability (issue 16): Prometheus metrics (plumbing/metrics.py) and consumer lag
    # (plumbing/kafka/lag.py). Traces are configured by the standard OTEL_* variables only.
    metrics_enabled: bool = Field(
        default=True,
        description="Count metrics; false makes counters and histograms no-ops (/metrics then "
        "serves process metrics and scrape-time gauges only). Read from the environment once "
        "per process",
    )
    metrics_per_webhook: bool = Field(
        default=False,
        description="Also count delivery attempts per webhook id (one series per webhook: only "
        "for a bounded number of webhooks)",
    )
    metrics_lag_per_partition: bool = Field(
        default=False,
        description="Export consumer lag per partition as well as per topic",
    )
    metrics_lag_cache: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a consumer-lag reading is reused by scrapes (it costs Kafka calls)",
    )
    delivery_web_host: str = Field(
        default="127.0.0.1",
        description="Where the delivery worker serves /metrics and /healthz (`--web-host`)",
    )
    delivery_web_port: int = Field(
        default=6067, ge=0, le=65535, description="Port of the delivery worker's /metrics"
    )

    # Portal (issue 17): links and sessions of the tenant portal (producers/portal/).
    portal_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs portal links and session cookies (any long random "
        "string, shared by every gateway replica); unset: a random key per process, so links "
        "stop working when the gateway restarts",
    )
    portal_base_url: str | None = Field(
        default=None,
        description="Public base URL of the gateway (e.g. https://events.example.com) that "
        "portal links start with, and whose https makes the session cookie Secure; unset: "
        "the address the request came to (development)",
    )

    # Endpoint features (issue 18)
    idempotency_ttl: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Seconds an Idempotency-Key of POST /v1/events is remembered (per tenant): "
        "a repeat within it gets the first answer and publishes nothing",
    )
    idempotency_claim_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a claimed Idempotency-Key waits for its first request to finish "
        "(a duplicate waits that long for the answer; a claim whose gateway died is free after)",
    )
    delivery_rate_limit_hold: float = Field(
        default=2.0,
        ge=0,
        description="Seconds of a rate-limited webhook's wait its tasks spend held in their "
        "lane; a task that would wait longer is parked on a retry tier (uncounted) until its turn",
    )

    @property
    def topics(self) -> Topics:
        """Topic names under the configured prefix and retry ladder."""
        return Topics(prefix=self.topic_prefix, retry_tiers=tuple(self.retry_tiers))
