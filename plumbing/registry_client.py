"""The configuration of a schema registry client (confluent-kafka's ``SchemaRegistryClient``)
from the settings: URL, basic auth and the CA that signed the registry's certificate."""

from __future__ import annotations

from typing import Any

from plumbing.settings import Settings
from schemas.serde import Serde


def registry_client_config(settings: Settings) -> dict[str, Any]:
    """``SchemaRegistryClient`` configuration for ``settings`` (holds the password in clear:
    pass it to the client, never to a log)."""
    config: dict[str, Any] = {"url": settings.schema_registry_url}
    if settings.schema_registry_basic_auth is not None:
        config["basic.auth.credentials.source"] = "USER_INFO"
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    if settings.schema_registry_ca_location is not None:
        config["ssl.ca.location"] = str(settings.schema_registry_ca_location)
    return config


def serde_for(settings: Settings) -> Serde:
    """The codecs of every model, on a registry client configured from ``settings``: every
    component builds its ``Serde`` here, so registry credentials reach all of them."""
    return Serde(registry_client_config(settings))
