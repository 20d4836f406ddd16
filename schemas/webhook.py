"""The Webhook model (a tenant's subscription) as stored on the compacted webhooks topic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from schemas import ids
from schemas.custom_headers import check_name
from schemas.errors import ContractError
from schemas.filters import filter_text
from schemas.timestamps import format_rfc3339, utc_now


@dataclass(frozen=True, slots=True)
class EncryptedSecret:
    """One signing secret, encrypted. ``expires_at`` is set on the old one during rotation."""

    ciphertext: str
    created_at: datetime
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"EncryptedSecret(created_at={self.created_at!r}, expires_at={self.expires_at!r})"

    def active_at(self, moment: datetime) -> bool:
        return self.expires_at is None or self.expires_at > moment


@dataclass(frozen=True, slots=True)
class EncryptedHeader:
    """One custom header sent with every attempt; its value encrypted like a secret."""

    name: str
    ciphertext: str

    def __repr__(self) -> str:
        return f"EncryptedHeader(name={self.name!r})"  # the value never reaches a log


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` sends on average to the webhook, ``burst`` at once (issue 18)."""

    per_second: float
    burst: int

    MAX = 10_000  # either number; a limit above it is no limit worth pacing for

    def __post_init__(self) -> None:
        rate = self.per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= self.MAX:
            raise ContractError("rate_limit.per_second", f"must be a number > 0 and <= {self.MAX}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int):
            raise ContractError("rate_limit.burst", "must be an integer")
        if not 1 <= self.burst <= self.MAX:
            raise ContractError("rate_limit.burst", f"must be from 1 to {self.MAX}")
        object.__setattr__(self, "per_second", float(rate))

    def to_json_dict(self) -> dict[str, Any]:
        return {"per_second": self.per_second, "burst": self.burst}


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's endpoint and the event types (exact or wildcard) it receives.

    ``version`` counts the writes of the record (0 for one written before versions existed):
    every writer stores ``version + 1`` of what it read, so a writer can tell whether the
    record changed since it read it (the gateway's ETag and If-Match are this number).
    """

    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...] = ()
    active: bool = True
    secrets: tuple[EncryptedSecret, ...] = ()
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    version: int = 0
    # The payload filter (schemas/filters.py) as its compact JSON text, None for no filter:
    # text keeps the frozen record hashable and is the form stored in Avro.
    filter_json: str | None = None
    # Custom headers (issue 18), values encrypted (schemas/secrets.py SecretBox).
    headers: tuple[EncryptedHeader, ...] = ()
    rate_limit: RateLimit | None = None  # None: unlimited

    def __post_init__(self) -> None:
        ids.check_id(self.id, ids.WEBHOOK, "id")
        if not isinstance(self.tenant_id, str) or not self.tenant_id.strip():
            raise ContractError("tenant_id", "must be a non-empty string")
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ContractError("url", "must be an http:// or https:// URL")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise ContractError("version", "must be a non-negative integer")
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "secrets", tuple(self.secrets))
        if self.filter_json is not None:
            object.__setattr__(self, "filter_json", _filter_json(self.filter_json))
        object.__setattr__(self, "headers", tuple(self.headers))
        for header in self.headers:
            check_name(header.name, f"headers.{header.name}")

    def updated(self, **changes: Any) -> Self:
        """The next version: ``changes`` applied, ``updated_at`` now, ``version`` + 1."""
        return replace(self, **{"version": self.version + 1, **changes}, updated_at=utc_now())

    def active_secrets(self, moment: datetime | None = None) -> list[EncryptedSecret]:
        """The secrets to sign with now: the current one plus any inside a rotation overlap."""
        moment = moment or utc_now()
        return [secret for secret in self.secrets if secret.active_at(moment)]

    @property
    def payload_filter(self) -> dict[str, Any] | None:
        """The payload filter as a JSON object (a fresh copy), or None when there is none."""
        if self.filter_json is None:
            return None
        parsed: dict[str, Any] = json.loads(self.filter_json)
        return parsed

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON Ctrl Plane's Go Webhook struct marshals (the secret is never part of it),
        plus the endpoint features of issue 18 when set (absent otherwise, like omitempty)."""
        data: dict[str, Any] = {
            "id": self.id,
            "created_at": format_rfc3339(self.created_at),
            "updated_at": format_rfc3339(self.updated_at),
            "tenant_id": self.tenant_id,
            "url": self.url,
            "events": list(self.events),
            "active": self.active,
        }
        if self.filter_json is not None:
            data["filter"] = self.payload_filter
        if self.headers:
            data["headers"] = [h.name for h in self.headers]  # names only: values are secrets
        if self.rate_limit is not None:
            data["rate_limit"] = self.rate_limit.to_json_dict()
        return data

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "url": self.url,
            "events": list(self.events),
            "active": self.active,
            "secrets": [
                {"ciphertext": s.ciphertext, "created_at": s.created_at, "expires_at": s.expires_at}
                for s in self.secrets
            ],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "filter": self.filter_json,
            "headers": [{"name": h.name, "ciphertext": h.ciphertext} for h in self.headers],
            "rate_limit": None if self.rate_limit is None else self.rate_limit.to_json_dict(),
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        return cls(
            id=record["id"],
            tenant_id=record["tenant_id"],
            url=record["url"],
            events=tuple(record["events"]),
            active=record["active"],
            secrets=tuple(
                EncryptedSecret(s["ciphertext"], s["created_at"], s.get("expires_at"))
                for s in record.get("secrets", [])
            ),
            created_at=record["created_at"],
            updated_at=record["updated_at"],
            # Absent from records written before the field existed (resolution fills 0 too).
            version=record.get("version", 0),
            filter_json=record.get("filter"),
            headers=tuple(
                EncryptedHeader(h["name"], h["ciphertext"]) for h in record.get("headers", [])
            ),
            rate_limit=_rate_limit(record.get("rate_limit")),
        )


def _rate_limit(record: Mapping[str, Any] | None) -> RateLimit | None:
    return None if record is None else RateLimit(record["per_second"], record["burst"])


def _filter_json(text: Any) -> str:
    """``text`` as the canonical text of a valid filter; ContractError naming ``filter``."""
    if not isinstance(text, str):
        raise ContractError("filter", "must be the JSON text of a filter object")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ContractError("filter", f"is not valid JSON text ({exc})") from None
    return filter_text(parsed)
