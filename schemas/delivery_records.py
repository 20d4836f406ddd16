"""Delivery tasks (one event for one webhook) and their attempt records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from schemas import ids
from schemas.event import Event
from schemas.timestamps import format_rfc3339, utc_now


@dataclass(frozen=True, slots=True)
class DeliveryTask:
    """Deliver ``event`` to webhook ``webhook_id`` at ``url``. ``id`` is derived, hence stable."""

    id: str
    webhook_id: str
    tenant_id: str
    url: str
    event: Event
    created_at: datetime = field(default_factory=utc_now)

    @classmethod
    def for_event(cls, event: Event, webhook_id: str, url: str) -> Self:
        """The task for (event, webhook); the same pair always yields the same task id."""
        return cls(
            id=ids.delivery_id(event.id, webhook_id),
            webhook_id=webhook_id,
            tenant_id=event.tenant_id,
            url=url,
            event=event,
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "tenant_id": self.tenant_id,
            "url": self.url,
            "event": self.event.to_avro(),
            "created_at": self.created_at,
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        return cls(
            id=record["id"],
            webhook_id=record["webhook_id"],
            tenant_id=record["tenant_id"],
            url=record["url"],
            event=Event.from_avro(record["event"]),
            created_at=record["created_at"],
        )


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """The latest state of one delivery; a new record is written on every attempt."""

    id: str
    webhook_id: str
    event_id: str
    tenant_id: str
    status: DeliveryStatus
    attempts: int
    status_code: int = 0
    next_retry: datetime | None = None
    error: str | None = None
    duration_ms: float = 0.0
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON of Ctrl Plane's Go WebhookDelivery struct, plus status, tenant, duration."""
        data: dict[str, Any] = {
            "id": self.id,
            "created_at": format_rfc3339(self.created_at),
            "updated_at": format_rfc3339(self.updated_at),
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "status": str(self.status),
            "status_code": self.status_code,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
        }
        if self.next_retry is not None:
            data["next_retry"] = format_rfc3339(self.next_retry)
        if self.error:
            data["error"] = self.error
        return data

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "status": str(self.status),
            "status_code": self.status_code,
            "attempts": self.attempts,
            "next_retry": self.next_retry,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        return cls(
            id=record["id"],
            webhook_id=record["webhook_id"],
            event_id=record["event_id"],
            tenant_id=record["tenant_id"],
            status=DeliveryStatus(record["status"]),
            attempts=record["attempts"],
            status_code=record["status_code"],
            next_retry=record.get("next_retry"),
            error=record.get("error"),
            duration_ms=record["duration_ms"],
            created_at=record["created_at"],
            updated_at=record["updated_at"],
        )
