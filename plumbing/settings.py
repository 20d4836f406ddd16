"""Configuration from ``CPEVENTS_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.topics import Topics

KAFKA_VERSION = "4.1.1"


class Settings(BaseSettings):
    """Every knob of the platform. Each field reads ``CPEVENTS_<FIELD>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="CPEVENTS_", extra="ignore", frozen=True)

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka to use; unset means the local broker of `cpevents kafka start`",
    )
    schema_registry_url: str = "http://127.0.0.1:8081"
    registry_topic: str = Field(default="_schemas", description="Compacted topic of the registry")
    topic_prefix: str = "ctrlplane."
    partitions: int = Field(default=3, ge=1, description="Default partitions for new topics")
    replication_factor: int = Field(default=1, ge=1)
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
        default=30.0, gt=0, description="How long an open breaker fails fast before a trial"
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

    @property
    def topics(self) -> Topics:
        """Topic names under the configured prefix and retry ladder."""
        return Topics(prefix=self.topic_prefix, retry_tiers=tuple(self.retry_tiers))
