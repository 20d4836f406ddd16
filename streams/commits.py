"""Faust's commit bookkeeping, corrected so a commit never passes an unprocessed message.

faust-streaming (0.15.3) computes the next offset to commit from the offsets acked so far. It
refuses to commit while the lowest acked offset is ahead of the committed one, but compares as
if the committed offset were the last *processed* one, when it is the next one *to read*: with
committed 10 and acked 11, 12 it commits 13, skipping 10; with committed 0 it skips the check.
That only bites when acks arrive out of order (a rebalance with messages in flight), but then
an event is lost, and at-least-once is the router's promise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.raw_batches import RawBatchMixin


class CommitSafeConsumer(RawBatchMixin, faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, committing only up to the first unacked offset, with the
    router's raw-batch path (``streams.raw_batches``)."""

    def _new_offset(self, tp: TP) -> int | None:
        committed = self._committed_offset[tp]
        if committed is None:
            return super()._new_offset(tp)
        # Present the last processed offset to the head-gap check (which also makes a committed
        # offset of 0 count); _new_offset never awaits, so nothing sees the temporary value.
        self._committed_offset[tp] = committed - 1
        try:
            return super()._new_offset(tp)
        finally:
            self._committed_offset[tp] = committed


class CommitSafeTransport(faust_aiokafka.Transport):
    Consumer = CommitSafeConsumer


class CommitSafeApp(faust.App):
    """A Faust app whose consumer uses :class:`CommitSafeConsumer`."""

    #: Topics read as raw batches (see :meth:`read_raw`), and the largest batch.
    raw_topics: frozenset[str] = frozenset()
    raw_batch_size: int = 1000

    def read_raw(self, topics: Iterable[str], batch_size: int) -> None:
        """Have the consumer hand ``topics``' records to ``consumer.raw_batches()`` (see
        ``streams.raw_batches``) rather than to Faust's streams; before the app starts."""
        self.raw_topics = frozenset(topics)
        self.raw_batch_size = batch_size

    def _new_consumer(self) -> Any:
        consumer = cast(CommitSafeConsumer, super()._new_consumer())
        consumer.raw_topics = self.raw_topics
        consumer.raw_batch_size = self.raw_batch_size
        return consumer

    def _new_transport(self) -> Any:
        return CommitSafeTransport(self.conf.broker_consumer, self)
