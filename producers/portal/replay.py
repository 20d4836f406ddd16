"""Replay from the portal: send one endpoint the events of a time range again.

The events topics are read over the range (their offsets found by timestamp), filtered to the
endpoint's tenant and subscribed types, and each event becomes a DeliveryTask on the deliveries
topic with the id the router gives it (``schemas.ids.delivery_id``, via
``DeliveryTask.for_event``): a redelivery is exactly what ``cpevents replay --redeliver`` writes,
so the delivery worker signs it as the first time (``webhook-id`` = the event id).

Counting (the confirmation step) and sending scan the same way, so the count shown is what a
send writes unless events arrive in between.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from plumbing.kafka.clients import consume_available, consumer_config
from plumbing.kafka.produce import Record
from plumbing.settings import Settings
from producers.portal.filters import subscribed_types
from schemas.delivery_records import DeliveryTask
from schemas.event import Event
from schemas.event_types import subsystem_of
from schemas.serde import DecodeError, Serde
from schemas.timestamps import to_epoch_micros
from schemas.webhook import Webhook

# No progress for this long ends a scan (an unreachable cluster must not hang a request).
_SCAN_TIMEOUT = 20.0
# A replay is a deliberate, bounded action from a page; larger ones belong to the CLI.
MAX_REPLAY = 10_000


class ReplayTooLarge(ValueError):
    """The range holds more events than a portal replay may send."""


def _topics(settings: Settings, webhook: Webhook) -> list[str]:
    subsystems = dict.fromkeys(subsystem_of(t) for t in subscribed_types(webhook.events))
    return [settings.topics.events(s) for s in subsystems]


def _ranges(
    consumer: Consumer, topic: str, start_ms: int, end_ms: int
) -> list[tuple[TopicPartition, int]]:
    # (first partition offset at or after start, offset at or after end) for each partition.
    metadata = consumer.list_topics(topic, timeout=_SCAN_TIMEOUT)
    partitions = sorted(metadata.topics[topic].partitions)
    starts = consumer.offsets_for_times(
        [TopicPartition(topic, p, start_ms) for p in partitions], timeout=_SCAN_TIMEOUT
    )
    ends = consumer.offsets_for_times(
        [TopicPartition(topic, p, end_ms) for p in partitions], timeout=_SCAN_TIMEOUT
    )
    ranges = []
    for first, last in zip(starts, ends, strict=True):
        _, high = consumer.get_watermark_offsets(first, timeout=_SCAN_TIMEOUT)
        # -1: no record at or after that time, so the range runs to the end of the partition.
        stop = high if last.offset < 0 else last.offset
        if first.offset >= 0 and first.offset < stop:
            ranges.append((first, stop))
    return ranges


def matching_events(
    settings: Settings, serde: Serde, webhook: Webhook, start: datetime, end: datetime
) -> Iterator[Event]:
    """The events of ``webhook``'s tenant and types with a timestamp in ``[start, end)``."""
    start_ms, end_ms = to_epoch_micros(start) // 1000, to_epoch_micros(end) // 1000
    types = set(subscribed_types(webhook.events))
    consumer = Consumer(consumer_config(settings, f"portal-replay-{uuid.uuid4().hex}"))
    try:
        for topic in _topics(settings, webhook):
            ranges = _ranges(consumer, topic, start_ms, end_ms)
            if not ranges:
                continue
            consumer.assign([first for first, _ in ranges])
            yield from _read(consumer, serde, topic, dict((f.partition, s) for f, s in ranges),
                             webhook.tenant_id, types, (start, end))  # fmt: skip
    finally:
        consumer.close()


def _read(
    consumer: Consumer,
    serde: Serde,
    topic: str,
    stops: dict[int, int],
    tenant_id: str,
    types: set[str],
    window: tuple[datetime, datetime],
) -> Iterator[Event]:
    progress_at = time.monotonic()
    while stops:
        messages = consume_available(consumer, 500, 1.0)
        if messages:
            progress_at = time.monotonic()
        else:
            _drop_finished(consumer, topic, stops)
            if stops and time.monotonic() - progress_at > _SCAN_TIMEOUT:
                raise TimeoutError(f"{topic}: no record within {_SCAN_TIMEOUT}s")
        for message in messages:
            # The tenant is the record key: other tenants' events are skipped undecoded.
            if not _in_range(message, stops) or message.key() != tenant_id.encode():
                continue
            try:
                event = serde.events.decode(message.value(), topic)
            except DecodeError:
                continue  # the router dead-lettered it; it was never deliverable
            if (
                event.tenant_id == tenant_id
                and str(event.type) in types
                and window[0] <= event.timestamp < window[1]
            ):
                yield event


def _in_range(message: Message, stops: dict[int, int]) -> bool:
    # Whether ``message`` is inside its partition's range; drops the partitions it finishes.
    partition = message.partition() or 0
    if message.error() is not None or partition not in stops:
        return False  # transient errors: the consumer retries on its own
    offset, stop = message.offset() or 0, stops[partition]
    if offset + 1 >= stop:
        del stops[partition]
    return offset < stop


def _drop_finished(consumer: Consumer, topic: str, stops: dict[int, int]) -> None:
    # Transaction markers can end a range without a record at its last offset.
    for tp in consumer.position([TopicPartition(topic, p) for p in list(stops)]):
        if tp.offset >= stops.get(tp.partition, 0):
            stops.pop(tp.partition, None)


def replay_tasks(
    settings: Settings, serde: Serde, webhook: Webhook, start: datetime, end: datetime
) -> list[Record]:
    """The task records that send ``webhook`` its events of ``[start, end)`` again.

    ReplayTooLarge if there are more than MAX_REPLAY (nothing is sent then)."""
    topic = settings.topics.deliveries
    records: list[Record] = []
    for event in matching_events(settings, serde, webhook, start, end):
        if len(records) == MAX_REPLAY:
            raise ReplayTooLarge(f"more than {MAX_REPLAY} events: narrow the range")
        task = DeliveryTask.for_event(event, webhook.id, webhook.url)
        records.append(Record(topic, webhook.id.encode(), serde.tasks.encode(task, topic)))
    return records
