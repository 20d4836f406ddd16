"""The registry's Prometheus metrics: requests by route and status (``plumbing.metrics``'s
HTTP middleware, which also answers ``GET /metrics`` before authentication), and the live
subjects and schemas, read from the store's state when Prometheus scrapes."""

from __future__ import annotations

from plumbing.metrics import HttpMetrics, ScrapeGauge
from registry.state import RegistryState
from registry.store import KafkaStore

__all__ = ["http_metrics", "store_gauges", "watch_store"]


def http_metrics() -> HttpMetrics:
    """The request timer of the registry's application (``cpevents_http_request_duration_
    seconds{service="registry"}``)."""
    return HttpMetrics("registry")


def _counts(state: RegistryState) -> tuple[float, float]:
    subjects = state.subjects()
    ids = {record.schema_id for subject in subjects for record in state.versions(subject)}
    return float(len(subjects)), float(len(ids))


def store_gauges() -> tuple[ScrapeGauge, ScrapeGauge]:
    """The process's subjects and schemas gauges (made once)."""
    return (
        ScrapeGauge.make("cpevents_registry_subjects", "Subjects with at least one live version"),
        ScrapeGauge.make("cpevents_registry_schemas", "Distinct schemas (ids) of live versions"),
    )


def watch_store(store: KafkaStore) -> None:
    """Export the subjects and schemas of ``store`` (read under its lock at scrape time)."""
    subjects, schemas = store_gauges()
    subjects.add(store, lambda s: s.read(_counts)[0])
    schemas.add(store, lambda s: s.read(_counts)[1])
