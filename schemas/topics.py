"""Topic names and settings, from the topic catalog (``catalog/topics.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import ContractError
from schemas.event_types import SUBSYSTEMS, load_catalog, subsystem_of

_TOPIC_CATALOG = load_catalog("topics.json")


@dataclass(frozen=True)
class TopicSpec:
    """One concrete topic with its settings."""

    name: str
    role: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class Topics:
    """Topic names under a prefix (``CPEVENTS_TOPIC_PREFIX``, default ``ctrlplane.``)."""

    prefix: str = "ctrlplane."
    retry_tiers: tuple[str, ...] = tuple(_TOPIC_CATALOG["retry_tiers"])

    def events(self, subsystem: str) -> str:
        """The event topic of a subsystem, e.g. ``ctrlplane.events.instance``."""
        if subsystem not in SUBSYSTEMS:
            raise ContractError("subsystem", f"unknown subsystem {subsystem!r}")
        return f"{self.prefix}events.{subsystem}"

    def for_event_type(self, event_type: str) -> str:
        """The topic an event of ``event_type`` is published to."""
        return self.events(subsystem_of(event_type))

    @property
    def all_events(self) -> list[str]:
        return [self.events(s) for s in SUBSYSTEMS]

    @property
    def webhooks(self) -> str:
        return f"{self.prefix}webhooks"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}deliveries"

    def retry(self, tier: str) -> str:
        """The delay topic of a retry tier, e.g. ``ctrlplane.deliveries.retry.5m``."""
        return f"{self.prefix}deliveries.retry.{tier}"

    @property
    def deliveries_dlt(self) -> str:
        return f"{self.prefix}deliveries.dlt"

    @property
    def webhook_deliveries(self) -> str:
        return f"{self.prefix}webhook-deliveries"

    @property
    def events_dlt(self) -> str:
        return f"{self.prefix}events.dlt"

    @property
    def bus_dlt(self) -> str:
        """Where KafkaBus parks events whose handler kept failing."""
        return f"{self.prefix}bus.dlt"

    def specs(self, default_partitions: int) -> list[TopicSpec]:
        """Every topic of the catalog with its partitions and config, placeholders expanded."""
        specs: list[TopicSpec] = []
        for entry in _TOPIC_CATALOG["topics"]:
            partitions = entry["partitions"] or default_partitions
            config = dict(entry["config"])
            template: str = entry["name"]
            if "{subsystem}" in template:
                names = [template.format(subsystem=s) for s in SUBSYSTEMS]
            elif "{tier}" in template:
                names = [template.format(tier=t) for t in self.retry_tiers]
            else:
                names = [template]
            specs.extend(
                TopicSpec(self.prefix + n, entry["role"], partitions, config) for n in names
            )
        return specs
