"""Configuration from ``CPEVENTS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.catalog import Topics

KAFKA_VERSION = "4.1.1"


class Settings(BaseSettings):
    """Every knob of the platform. Each field reads ``CPEVENTS_<FIELD>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="CPEVENTS_", extra="ignore", frozen=True)

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka to use; unset means the local broker of `cpevents kafka start`",
    )
    schema_registry_url: str = "http://127.0.0.1:8081"
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

    # Local broker (used when bootstrap_servers is unset and no Docker engine is reachable).
    home: Path = Field(
        default=Path.home() / ".cache" / "cpevents",
        description="Where Kafka jars, broker data and pid files live",
    )
    kafka_version: str = KAFKA_VERSION
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"

    @property
    def topics(self) -> Topics:
        """Topic names under the configured prefix and retry ladder."""
        return Topics(prefix=self.topic_prefix, retry_tiers=tuple(self.retry_tiers))
