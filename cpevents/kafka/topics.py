"""Create the catalog's topics, idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cpevents.kafka.clients import admin_config
from cpevents.settings import Settings
from schemas.catalog import TopicSpec


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool


def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0
) -> list[TopicResult]:
    """Create every topic in ``specs`` (default: the whole catalog) that does not exist yet."""
    specs = specs if specs is not None else settings.topics.specs(settings.partitions)
    admin = AdminClient(admin_config(settings))
    futures = admin.create_topics(
        [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                config=spec.config,
            )
            for spec in specs
        ],
        request_timeout=timeout,
    )
    results: list[TopicResult] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results.append(TopicResult(name, created=True))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            results.append(TopicResult(name, created=False))
    _wait_for_metadata(admin, [spec.name for spec in specs], timeout)
    return sorted(results, key=lambda result: result.name)


def _wait_for_metadata(admin: AdminClient, names: list[str], timeout: float) -> None:
    # CreateTopics returns before every partition has a leader; producing right away can fail
    # with UNKNOWN_TOPIC_OR_PART, so wait until metadata shows leaders for all of them.
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        pending = [
            name
            for name in names
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics have no leader yet: {pending}")
        time.sleep(0.1)
