"""Create the catalog's topics, idempotently, and keep their settings-driven configuration.

New topics get the catalog's configuration, with values that come from settings applied
(:func:`configured`: the attempt log's ``retention.ms`` from ``CPEVENTS_ATTEMPT_LOG_RETENTION``).
For a topic that already exists, the configuration keys the catalog sets are compared with the
broker's:

- keys driven by settings (:data:`ENFORCED`: the attempt log's ``cleanup.policy`` and
  ``retention.ms``, the fix for its unbounded growth) are **altered** to the wanted value
  (incremental alter, only those keys) and listed in ``TopicResult.altered``;
- any other difference is only **reported** (``TopicResult.drift``, logged at WARNING): an
  operator may have tuned it on purpose, and the catalog's default must not undo that.

Replication (:func:`decide_replication`): ``CPEVENTS_REPLICATION_FACTOR`` and
``CPEVENTS_MIN_INSYNC_REPLICAS``, each a number or ``auto`` (3 replicas and min ISR 2 from three
brokers on, 1 and 1 on a single broker, from the broker count the cluster reports). New topics
are created with both; an existing topic with fewer replicas or a lower ``min.insync.replicas``
is **reported** (``TopicResult.under_replicated``, WARNING), never altered: raising a topic's
replication factor is a partition reassignment, an operator's decision.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from plumbing.kafka.clients import LATEST_OFFSET, admin_config
from plumbing.settings import Settings
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

#: Configuration keys brought in line on existing topics, by topic role: their values come from
#: settings, so a difference means the topic predates the setting (or the setting changed).
ENFORCED: dict[str, tuple[str, ...]] = {"attempt-log": ("cleanup.policy", "retention.ms")}

MIN_INSYNC = "min.insync.replicas"
FACTOR = "replication.factor"
#: How to raise an existing topic's replication, for the WARNING (and the README).
RAISE_REPLICATION_HINT = (
    "left as is: raise the replication factor with a partition reassignment "
    "(kafka-reassign-partitions.sh --execute with a plan listing 3 replicas per partition), "
    f"then {MIN_INSYNC} with kafka-configs.sh --alter --entity-type topics "
    f"--add-config {MIN_INSYNC}=2"
)


@dataclass(frozen=True)
class Replication:
    """Replication factor and ``min.insync.replicas`` of new topics."""

    factor: int
    min_insync: int


def decide_replication(
    factor: int | Literal["auto"], min_insync: int | Literal["auto"], brokers: int
) -> Replication:
    """The replication of new topics on a cluster of ``brokers`` live brokers.

    ``auto`` factor: one replica per broker up to 3. ``auto`` min ISR: 2 with 3+ replicas (an
    acks=all write then survives the loss of any one broker and is refused rather than kept
    on a single copy), else 1. Raises ValueError for a combination every acks=all write
    would be refused with.
    """
    replicas = min(3, max(1, brokers)) if factor == "auto" else factor
    in_sync = (2 if replicas >= 3 else 1) if min_insync == "auto" else min_insync
    if in_sync > replicas:
        raise ValueError(
            f"CPEVENTS_MIN_INSYNC_REPLICAS={in_sync} is more than the {replicas} replicas of "
            "each topic: every acks=all write would be refused"
        )
    return Replication(replicas, in_sync)


def with_replication(settings: Settings) -> Settings:
    """``settings`` with replication ``auto`` resolved against the cluster (asked once): for a
    process that creates topics in several places (ours and Faust's)."""
    replication = replication_for(settings)
    return settings.model_copy(
        update={
            "replication_factor": replication.factor,
            "min_insync_replicas": replication.min_insync,
        }
    )


def replication_for(settings: Settings, admin: AdminClient | None = None) -> Replication:
    """The replication of new topics for ``settings``, asking the cluster how many brokers it
    has when a setting is ``auto``."""
    brokers = 1
    if "auto" in (settings.replication_factor, settings.min_insync_replicas):
        admin = admin or AdminClient(admin_config(settings))
        brokers = len(admin.list_topics(timeout=30).brokers)
    return decide_replication(settings.replication_factor, settings.min_insync_replicas, brokers)


def replication_shortfall(
    replicas: int, min_insync: str | None, wanted: Replication
) -> dict[str, tuple[int | None, int]]:
    """What an existing topic lacks against ``wanted``: key -> (actual, wanted), for the
    replication factor (fewest replicas of any partition) and ``min.insync.replicas``."""
    shortfall: dict[str, tuple[int | None, int]] = {}
    if replicas < wanted.factor:
        shortfall[FACTOR] = (replicas, wanted.factor)
    actual = int(min_insync) if min_insync is not None and min_insync.isdigit() else None
    if actual is None or actual < wanted.min_insync:
        shortfall[MIN_INSYNC] = (actual, wanted.min_insync)
    return shortfall


@dataclass(frozen=True)
class TopicResult:
    """What :func:`ensure_topics` did to one topic."""

    name: str
    created: bool
    #: Keys altered on an existing topic: key -> the value set.
    altered: dict[str, str] = field(default_factory=dict)
    #: Other keys that differ from the catalog (left as they are): key -> (actual, catalog).
    drift: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    #: Replication below the settings (left as it is): ``replication.factor`` and/or
    #: ``min.insync.replicas`` -> (actual, wanted).
    under_replicated: dict[str, tuple[int | None, int]] = field(default_factory=dict)


def configured(spec: TopicSpec, settings: Settings) -> TopicSpec:
    """``spec`` with the configuration values that come from settings applied."""
    if spec.role == "attempt-log":
        retention_ms = str(int(settings.attempt_log_retention * 1000))
        return replace(spec, config={**spec.config, "retention.ms": retention_ms})
    return spec


def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0
) -> list[TopicResult]:
    """Create every topic in ``specs`` (default: the whole catalog) that does not exist yet;
    bring the settings-driven keys of existing ones in line and report other drift."""
    specs = specs if specs is not None else settings.topics.specs(settings.partitions)
    specs = [configured(spec, settings) for spec in specs]
    admin = AdminClient(admin_config(settings))
    replication = replication_for(settings, admin)
    futures = admin.create_topics(
        [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication.factor,
                config={**spec.config, MIN_INSYNC: str(replication.min_insync)},
            )
            for spec in specs
        ],
        request_timeout=timeout,
    )
    results: list[TopicResult] = []
    existing: list[TopicSpec] = []
    by_name = {spec.name: spec for spec in specs}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results.append(TopicResult(name, created=True))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            existing.append(by_name[name])
    if existing:
        results.extend(_reconcile(admin, existing, replication, timeout))
    _wait_until_usable(admin, [spec.name for spec in specs], timeout)
    return sorted(results, key=lambda result: result.name)


def _reconcile(
    admin: AdminClient, specs: list[TopicSpec], replication: Replication, timeout: float
) -> list[TopicResult]:
    """Compare existing topics' configuration with ``specs``; alter the enforced keys; report
    replication below ``replication``."""
    replicas = _replica_counts(admin, [spec.name for spec in specs], timeout)
    resources = [ConfigResource(ResourceType.TOPIC, spec.name) for spec in specs]
    described = admin.describe_configs(resources, request_timeout=timeout)
    actual: dict[str, dict[str, str | None]] = {}
    for resource, future in described.items():
        entries = future.result(timeout=timeout)
        actual[resource.name] = {key: entry.value for key, entry in entries.items()}
    results = []
    changes: list[ConfigResource] = []
    for spec in specs:
        enforced = ENFORCED.get(spec.role, ())
        current = actual.get(spec.name, {})
        altered: dict[str, str] = {}
        drift: dict[str, tuple[str | None, str]] = {}
        for key, wanted in spec.config.items():
            if current.get(key) == wanted:
                continue
            if key in enforced:
                altered[key] = wanted
            else:
                drift[key] = (current.get(key), wanted)
        if drift:
            log.warning("topic %s differs from the catalog (left as is): %s", spec.name, drift)
        if altered:
            log.warning("topic %s: altering %s (from settings)", spec.name, altered)
            entries = [
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in altered.items()
            ]
            changes.append(
                ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=entries)
            )
        under = replication_shortfall(
            replicas.get(spec.name, replication.factor), current.get(MIN_INSYNC), replication
        )
        if under:
            log.warning(
                "topic %s is under-replicated for the settings (actual, wanted): %s; %s",
                spec.name,
                under,
                RAISE_REPLICATION_HINT,
            )
        results.append(
            TopicResult(
                spec.name, created=False, altered=altered, drift=drift, under_replicated=under
            )
        )
    if changes:
        for future in admin.incremental_alter_configs(changes, request_timeout=timeout).values():
            future.result(timeout=timeout)
    return results


def _replica_counts(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """Topic -> the fewest replicas any of its partitions has."""
    metadata = admin.list_topics(timeout=timeout)
    counts: dict[str, int] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.partitions:
            counts[name] = min(len(p.replicas) for p in topic.partitions.values())
    return counts


def _wait_until_usable(admin: AdminClient, names: list[str], timeout: float) -> None:
    # CreateTopics returns before the partitions can be used: first metadata lacks leaders, then
    # (KRaft) the leader named in metadata may still answer NOT_LEADER for a moment. Producing,
    # fetching or reading watermarks in that window fails, so wait until every partition of
    # every topic answers a ListOffsets request.
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        partitions: list[TopicPartition] = []
        missing: list[str] = []
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                missing.append(name)
                continue
            partitions.extend(TopicPartition(name, p) for p in topic.partitions)
        unusable: list[str] = list(missing)
        if partitions and not missing:
            futures = admin.list_offsets(
                dict.fromkeys(partitions, LATEST_OFFSET), request_timeout=timeout
            )
            for tp, future in futures.items():
                try:
                    future.result()
                except KafkaException:
                    unusable.append(f"{tp.topic}[{tp.partition}]")
        if not unusable:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not usable yet: {unusable[:5]}")
        time.sleep(0.1)
