"""Create the catalog's topics, idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from plumbing.kafka.clients import admin_config
from plumbing.settings import Settings
from schemas.topics import TopicSpec

_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # the library has no annotation


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
    _wait_until_usable(admin, [spec.name for spec in specs], timeout)
    return sorted(results, key=lambda result: result.name)


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
                dict.fromkeys(partitions, _LATEST), request_timeout=timeout
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
