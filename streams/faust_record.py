"""A Faust message seen as a confluent-kafka ``Message``, for code written against the latter
(the dead-letter convention's ``dead_letter_headers`` reads topic, partition, offset, timestamp
and headers): the router and users' processors park records the same way."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME


class FaustRecord:
    """A Faust message seen through the confluent ``Message`` methods the DLT headers read."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, int((self._message.timestamp or 0) * 1000)

    def headers(self) -> list[tuple[str, bytes]]:
        headers = self._message.headers or []
        pairs = headers.items() if isinstance(headers, dict) else headers
        return [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in pairs]


class ConsumerRecordView(FaustRecord):
    """An aiokafka ``ConsumerRecord`` (what the router's raw batches hold) seen the same way:
    its ``timestamp`` is in milliseconds already."""

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, int(self._message.timestamp or 0)
