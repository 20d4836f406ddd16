"""The one produce path: the record type, its headers, and what to do when librdkafka's local
queue is full.

Every writer of this project (the Bus, the gateway, the router, the delivery worker, redrive,
redeliver, the registry's store) hands records to a confluent-kafka ``Producer`` through
:func:`produce` or :func:`produce_async`, so back-pressure is handled in one place: a full queue
(``BufferError``) means "serve acknowledgements until there is room", never an error and never
a dropped record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Message, Producer

# A header value as confluent-kafka accepts it; consumed headers always come back as bytes.
HeaderValue = str | bytes | None
Headers = Sequence[tuple[str, HeaderValue]]
DeliveryCallback = Callable[[KafkaError | None, Message], Any]

# How long one wait for room lasts (seconds): short, so the record goes out as soon as room is
# made, long enough not to spin.
_ROOM_POLL = 0.01


class Record(NamedTuple):
    """One record to write: topic, key, value and headers (a NamedTuple: cheap per record)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


class PublishError(RuntimeError):
    """Kafka refused or failed to store a record; the caller must treat it as not written."""


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """A consumed message's headers as (name, bytes) pairs, in order (none: an empty list)."""
    headers = message.headers()
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [
        (name, value.encode() if isinstance(value, str) else value or b"")
        for name, value in pairs
    ]


def record_of(message: Message) -> Record:
    """A consumed message as a record to write again (same topic, key, value and headers)."""
    return Record(message.topic() or "", message.key(), message.value(), message_headers(message))


def _send(producer: Producer, record: Record, on_delivery: DeliveryCallback | None) -> None:
    headers = record.headers
    producer.produce(
        record.topic,
        key=record.key,
        value=record.value,
        headers=list(headers) if headers else None,
        on_delivery=on_delivery,
    )


def produce(producer: Producer, record: Record, on_delivery: DeliveryCallback | None) -> None:
    """Hand ``record`` to ``producer``; on a full local queue, serve acknowledgements (poll, so
    ``on_delivery`` callbacks run on this thread) until there is room.

    For callers that own the producer's polling on this thread. ``KafkaException`` (e.g. an
    unknown topic with auto-creation off, a record over the client's size limit) propagates:
    the record was not written.
    """
    while True:
        try:
            _send(producer, record, on_delivery)
            return
        except BufferError:
            producer.poll(_ROOM_POLL)


async def produce_async(
    producer: Producer, record: Record, on_delivery: DeliveryCallback | None
) -> None:
    """As :func:`produce`, for a producer polled by another thread: on a full queue, yield to
    the event loop until that thread has freed room (never blocks the loop)."""
    while True:
        try:
            _send(producer, record, on_delivery)
            return
        except BufferError:
            await asyncio.sleep(_ROOM_POLL)
