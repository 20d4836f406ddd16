"""Sample events, one per subsystem, for demos and smoke tests."""

from __future__ import annotations

from schemas.event import Event
from schemas.event_types import EventType
from schemas.ids import INSTANCE, new_id


def sample_events(tenant_id: str = "ten_demo") -> list[Event]:
    """One realistic event of each subsystem for ``tenant_id``."""
    instance = new_id(INSTANCE)
    return [
        Event.new(EventType.INSTANCE_CREATED, tenant_id)
        .with_instance(instance)
        .with_actor("usr_alice")
        .with_payload(
            {"name": "api", "replicas": 2, "resources": {"cpu": "500m", "memory": "1Gi"}}
        ),
        Event.new(EventType.DEPLOY_SUCCEEDED, tenant_id)
        .with_instance(instance)
        .with_payload({"release": "v1.4.2", "duration_s": 41.5}),
        Event.new(EventType.HEALTH_DEGRADED, tenant_id)
        .with_instance(instance)
        .with_payload({"check": "http", "latency_ms": 870, "threshold_ms": 500}),
        Event.new(EventType.DOMAIN_VERIFIED, tenant_id).with_payload({"domain": "api.example.com"}),
        Event.new(EventType.QUOTA_EXCEEDED, tenant_id).with_payload(
            {"resource": "instances", "limit": 10, "used": 11}
        ),
    ]
