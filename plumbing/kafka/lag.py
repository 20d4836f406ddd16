"""Consumer lag of our consumer groups: committed offsets against the partitions' ends.

The computation is pure (:func:`partition_lag`, :func:`topic_lags`); :class:`LagReader` does
the Kafka calls (the group's committed offsets through a consumer of the group that never
subscribes, then the earliest and latest offsets of each partition through one AdminClient);
:class:`LagCollector` exposes the result as the gauge ``cpevents_consumer_lag_records`` when
Prometheus scrapes, reusing a reading for a few seconds (``CPEVENTS_METRICS_LAG_CACHE``) so that
several scrapers cost one set of calls.

Lag of a partition: ``high - committed``; a partition the group never committed counts from the
earliest retained offset (what ``auto.offset.reset=earliest`` would read), so a new group shows
the whole backlog rather than nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing.kafka.clients import EARLIEST_OFFSET, LATEST_OFFSET, admin_config, consumer_config
from plumbing.metrics import register_collector
from plumbing.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "READ_BUDGET",
    "LagCollector",
    "LagReader",
    "LagSample",
    "Offsets",
    "partition_lag",
    "topic_lags",
    "watch_lag",
]

TP = tuple[str, int]
_MAX_GROUPS = 16
# How long one scrape's reading may go on before the groups left are skipped: a healthy Kafka
# answers every group's calls in milliseconds, an unreachable one makes each group wait its
# calls' timeouts (5 s each), and Prometheus gives up on a scrape after 10 s by default.
READ_BUDGET = 5.0


@dataclass(frozen=True, slots=True)
class Offsets:
    """One partition: the group's committed offset (None: never committed) and the earliest
    and latest (high watermark) offsets."""

    committed: int | None
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class LagSample:
    """Lag of one group on one topic (``partition`` None: summed over its partitions)."""

    group: str
    topic: str
    partition: int | None
    lag: int


def partition_lag(offsets: Offsets) -> int:
    """Records the group has yet to read on one partition (never negative)."""
    start = offsets.low if offsets.committed is None or offsets.committed < 0 else offsets.committed
    return max(offsets.high - max(start, offsets.low), 0)


def topic_lags(
    group: str, partitions: Mapping[TP, Offsets], per_partition: bool = False
) -> list[LagSample]:
    """The lag of ``group`` per topic (summed over partitions), and per partition too if asked,
    sorted by topic then partition (per-topic sample first)."""
    by_topic: dict[str, int] = {}
    samples: list[LagSample] = []
    for (topic, partition), offsets in sorted(partitions.items()):
        lag = partition_lag(offsets)
        by_topic[topic] = by_topic.get(topic, 0) + lag
        if per_partition:
            samples.append(LagSample(group, topic, partition, lag))
    samples.extend(LagSample(group, topic, None, lag) for topic, lag in by_topic.items())
    samples.sort(key=lambda s: (s.topic, -1 if s.partition is None else s.partition))
    return samples


class LagReader:
    """Reads committed offsets and partition ends through one AdminClient (blocking calls)."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self._admin = AdminClient(admin_config(settings))
        self._timeout = timeout
        self._settings = settings
        self._group_consumers: dict[str, Consumer] = {}  # by group, for committed()

    @property
    def admin(self) -> AdminClient:
        """The admin client (shared with callers that need more, e.g. ``cpevents status``)."""
        return self._admin

    def groups(self, prefix: str) -> list[str]:
        """The consumer groups whose id starts with ``prefix`` (ours, for a topic prefix)."""
        listed = self._admin.list_consumer_groups(request_timeout=self._timeout).result(
            timeout=self._timeout
        )
        return sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))

    def committed(self, group: str, partitions: Sequence[TP] | None = None) -> dict[TP, int]:
        """The offsets ``group`` committed, by partition: on ``partitions``, or on every
        partition it ever committed on (None).

        Given partitions, a consumer of the group that never subscribes (so never joins the
        group nor commits) fetches them: the AdminClient's ListConsumerGroupOffsets can abort
        the whole process when a broker restarts during the call (librdkafka issues #4605 and
        #3663, hit by the soak), and workers read lag on every scrape. Without partitions (the
        groups ``cpevents status`` discovers) only the AdminClient can list them.
        """
        if partitions is not None:
            return self._committed_on(group, partitions)
        request = [ConsumerGroupTopicPartitions(group)]
        futures = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout)
        answer = futures[group].result(timeout=self._timeout)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or ()
            if tp.error is None and tp.offset >= 0
        }

    def _committed_on(self, group: str, partitions: Sequence[TP]) -> dict[TP, int]:
        if not partitions:
            return {}
        consumer = self._group_consumers.get(group)
        if consumer is None:
            if len(self._group_consumers) >= _MAX_GROUPS:
                self._group_consumers.pop(next(iter(self._group_consumers))).close()
            consumer = Consumer(consumer_config(self._settings, group))
            self._group_consumers[group] = consumer
        found = consumer.committed(
            [TopicPartition(topic, partition) for topic, partition in partitions],
            timeout=self._timeout,
        )
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in found
            if tp.error is None and tp.offset >= 0
        }

    def close(self) -> None:
        """Close the group consumers made for :meth:`committed` (the reader stays usable)."""
        consumers, self._group_consumers = self._group_consumers, {}
        for consumer in consumers.values():
            consumer.close()

    def partitions(self, topics: Iterable[str]) -> list[TP]:
        """Every partition of ``topics`` that exists."""
        wanted = set(topics)
        if not wanted:
            return []
        metadata = self._admin.list_topics(timeout=self._timeout)
        return [
            (name, partition)
            for name, topic in metadata.topics.items()
            if name in wanted and topic.error is None
            for partition in topic.partitions
        ]

    def ends(self, partitions: Sequence[TP]) -> dict[TP, tuple[int, int]]:
        """(earliest, latest) offsets of each partition."""
        if not partitions:
            return {}
        found: dict[TP, list[int]] = {tp: [0, 0] for tp in partitions}
        for index, spec in ((0, EARLIEST_OFFSET), (1, LATEST_OFFSET)):
            request = {TopicPartition(t, p): spec for t, p in partitions}
            futures = self._admin.list_offsets(request, request_timeout=self._timeout)
            for tp, future in futures.items():
                found[(tp.topic, tp.partition)][index] = future.result(timeout=self._timeout).offset
        return {tp: (low, high) for tp, (low, high) in found.items()}

    def read(self, group: str, topics: Iterable[str] = ()) -> dict[TP, Offsets]:
        """The offsets of every partition ``group`` committed on, and of every partition of
        ``topics`` (the group's subscription: partitions it never committed on count too)."""
        subscribed = self.partitions(topics)
        # Partitions of the subscription are read the safe way; a group read without topics
        # (cpevents status' others) reports what it committed on.
        committed = self.committed(group, subscribed if subscribed else None)
        wanted = set(committed) | set(subscribed)
        ends = self.ends(sorted(wanted))
        return {tp: Offsets(committed.get(tp), low, high) for tp, (low, high) in ends.items()}

    def lags(
        self, group: str, topics: Iterable[str] = (), per_partition: bool = False
    ) -> list[LagSample]:
        """``topic_lags`` of ``group`` read now."""
        return topic_lags(group, self.read(group, topics), per_partition)


class LagCollector(Collector):
    """``cpevents_consumer_lag_records{group,topic}`` (and, per partition when asked,
    ``cpevents_consumer_partition_lag_records{group,topic,partition}``),
    read from Kafka when scraped, at most every ``cache`` seconds. ``groups`` maps each group
    to the topics it subscribes to."""

    NAME = "cpevents_consumer_lag_records"
    PARTITION_NAME = "cpevents_consumer_partition_lag_records"
    HELP = "Records a consumer group has yet to read (committed offset to high watermark)"

    def __init__(
        self,
        settings: Settings,
        groups: Mapping[str, Sequence[str]],
        per_partition: bool | None = None,
        cache: float | None = None,
        reader: LagReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._groups = dict(groups)
        self._per_partition = (
            settings.metrics_lag_per_partition if per_partition is None else per_partition
        )
        self._cache = settings.metrics_lag_cache if cache is None else cache
        self._reader = reader
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._samples: list[LagSample] = []

    def add_group(self, group: str, topics: Sequence[str]) -> None:
        """Report ``group`` too (a second worker kind in the same process, say)."""
        with self._lock:
            self._groups.pop(group, None)
            self._groups[group] = list(topics)
            while len(self._groups) > _MAX_GROUPS:  # a test process makes many; keep the last
                del self._groups[next(iter(self._groups))]
            self._read_at = float("-inf")

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> list[GaugeMetricFamily]:
        families = [GaugeMetricFamily(self.NAME, self.HELP, labels=["group", "topic"])]
        if self._per_partition:
            families.append(
                GaugeMetricFamily(
                    self.PARTITION_NAME, self.HELP, labels=["group", "topic", "partition"]
                )
            )
        return families

    def samples(self) -> list[LagSample]:
        """The current reading (refreshed if older than the cache time)."""
        with self._lock:
            if self._clock() - self._read_at >= self._cache:
                self._samples = self._read()
                # From the reading's end: a reading that took the cache time (Kafka away) is
                # still reused, rather than every scrape waiting for a new one.
                self._read_at = self._clock()
            return self._samples

    def _read(self) -> list[LagSample]:
        if self._reader is None:
            self._reader = LagReader(self._settings)
        samples: list[LagSample] = []
        groups = list(self._groups.items())
        deadline = self._clock() + READ_BUDGET
        for done, (group, topics) in enumerate(groups):
            if self._clock() >= deadline:  # Kafka is slow or away: the scrape must still answer
                log.warning(
                    "consumer lag of %d groups not read: reading took over %ss",
                    len(groups) - done,
                    READ_BUDGET,
                )
                break
            try:
                samples.extend(self._reader.lags(group, topics, self._per_partition))
            except Exception as exc:  # Kafka unreachable: no sample rather than a failed scrape
                log.warning("consumer lag of %s not read: %s", group, exc)
        return samples

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        for sample in self.samples():
            if sample.partition is None:
                families[0].add_metric([sample.group, sample.topic], sample.lag)
            elif len(families) > 1:
                families[1].add_metric(
                    [sample.group, sample.topic, str(sample.partition)], sample.lag
                )
        return families


def watch_lag(settings: Settings, group: str, topics: Sequence[str]) -> LagCollector:
    """Export the lag of ``group`` (subscribed to ``topics``) from this process's ``/metrics``
    (one collector per process, shared by every group it reports)."""
    made = register_collector(LagCollector.NAME, lambda: LagCollector(settings, {}))
    assert isinstance(made, LagCollector)
    made.add_group(group, topics)
    return made
