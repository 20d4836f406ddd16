"""The router agent: events ⋈ webhook configs → delivery tasks, at least once.

Faust has no stream-table join, so the join is a lookup in the broadcast webhook index. The
router takes raw batches of event records from the app's consumer (``streams.raw_batches``:
aiokafka's records, without Faust's per-message events, futures and acks), produces every
batch's tasks (and dead letters) with a confluent-kafka producer and returns only when Kafka
acknowledged all of them: a batch's offsets are acked only after that, and Faust commits only
acked offsets, so a crash at any point replays the batch (same delivery ids) instead of losing
it.

A task Kafka refuses as too large (its webhook URL and the event together exceed the
deliveries topic's ``max.message.bytes``) would replay its batch forever. The writer returns
such records instead (:class:`~streams.writer.Refused`), and the event they came from is
dead-lettered to ``events.dlt`` with the reason and its coordinates, so the partition moves on.
Its other tasks are written: a redrive of the dead letter routes the event again (same delivery
ids, so those repeat with the ids the delivery side already saw).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import Message, Producer

from plumbing import tracing
from plumbing.kafka.clients import producer_config
from plumbing.kafka.deadletter import dead_letter_headers
from plumbing.kafka.produce import Record
from streams.app import StreamsContext
from streams.commits import CommitSafeApp, CommitSafeConsumer
from streams.fanout import RegistryUnavailable, Router
from streams.faust_record import ConsumerRecordView
from streams.metrics import router_metrics
from streams.trace import BatchTrace
from streams.writer import BatchWriter, Refused

log = logging.getLogger(__name__)

SOURCE = "streams.router_agent"
# What a worker does when it cannot prove a batch was written: exit without committing.
EXIT_UNCONFIRMED = 70
_LAST_CHANCE_FLUSH_S = 10.0
# Characters of a dead letter's reason at most (one reason per refused task is joined).
_MAX_REASON = 2000


class RouterAgent:
    """Turns one batch of event records into output records and writes them durably."""

    def __init__(self, ctx: StreamsContext, writer: BatchWriter | None = None) -> None:
        topics = ctx.settings.topics
        self._deliveries = topics.deliveries
        self._dead_letters = topics.events_dlt
        self._router = Router(ctx.serde, ctx.webhooks.index, topics.deliveries)
        overrides: dict[str, Any] = {"linger.ms": 2, "batch.size": 1_000_000, "client.id": "router"}
        self._writer = writer or BatchWriter(Producer(producer_config(ctx.settings, **overrides)))
        self.routed_events = 0
        self.tasks_written = 0
        self.dead_lettered = 0
        self._metrics = router_metrics()  # counted once per batch (process)

    def outputs(self, messages: Sequence[Any]) -> list[Record]:
        """The tasks and dead letters for a batch of consumed records (aiokafka's
        ``ConsumerRecord``: ``topic``, ``partition``, ``offset``, ``key``, ``value``,
        ``headers``, ``timestamp`` in ms), in input order."""
        return self._outputs(messages)[0]

    def _outputs(self, messages: Sequence[Any]) -> tuple[list[Record], list[int]]:
        """``outputs``, and for each message the index of its first output record."""
        out: list[Record] = []
        starts: list[int] = []
        now_ns = time.time_ns()
        failed_at_ms = now_ns // 1_000_000
        created_at_us = now_ns // 1000  # one creation time for the batch's tasks
        route = self._router.route
        deliveries = self._deliveries
        # Off: not one span, header or context per event.
        batch_trace = BatchTrace(messages) if tracing.enabled else None
        dead_lettered = 0
        for index, message in enumerate(messages):
            starts.append(len(out))
            routed = route(message.topic, message.value, created_at_us)
            if routed.dead_letter_reason is not None:
                log.warning(
                    "dead-lettering %s[%s]@%s: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    routed.dead_letter_reason,
                )
                out.append(self._dead_letter(message, routed.dead_letter_reason, failed_at_ms))
                dead_lettered += 1
            elif batch_trace is not None:
                headers = batch_trace.headers(index)
                out.extend(Record(deliveries, t.key, t.value, headers) for t in routed.tasks)
            else:
                out.extend(Record(deliveries, t.key, t.value) for t in routed.tasks)
        if batch_trace is not None:
            batch_trace.end(len(out) - dead_lettered, dead_lettered)
        return out, starts

    def _dead_letter(self, message: Any, reason: str, failed_at_ms: int) -> Record:
        # The view provides the Message methods dead_letter_headers reads.
        coordinates = cast(Message, ConsumerRecordView(message))
        headers = dead_letter_headers(coordinates, reason, SOURCE, failed_at_ms)
        return Record(self._dead_letters, message.key, message.value, headers)

    async def process(self, messages: Sequence[Any]) -> None:
        """Write a batch's outputs; return only once Kafka acknowledged them.

        An unconfirmed batch ends the process at once (no ack, no commit, no graceful stop
        that could commit): the next owner of the partitions replays it (same delivery ids).
        """
        started = time.perf_counter()
        tasks_before, dead_before = self.tasks_written, self.dead_lettered
        confirmed = False
        records: list[Record] | None = None
        outputs: list[Record] = []
        refused: list[Refused] = []
        try:
            records, starts = await self._outputs_retrying(messages)
            outputs = records
            refused = await self._writer.write(records)
            if refused:
                letters = self._letters_for_refused(messages, records, starts, refused)
                records = letters  # if interrupted now, settle() concerns this second write
                await self._write_letters(letters)
            confirmed = True
        finally:
            if not confirmed and not (
                records is not None and self._writer.settle(_LAST_CHANCE_FLUSH_S)
            ):
                log.critical("batch not acknowledged by Kafka; exiting without committing")
                os._exit(EXIT_UNCONFIRMED)
        tasks = sum(1 for r in outputs if r.topic == self._deliveries)
        self.tasks_written += tasks - sum(1 for r in refused if r.record.topic == self._deliveries)
        self.dead_lettered += sum(1 for r in outputs if r.topic == self._dead_letters)
        if refused:
            self.dead_lettered += len(records)
        self.routed_events += len(messages)
        self._metrics.batch(
            len(messages),
            starts,
            len(outputs),
            self.tasks_written - tasks_before,
            self.dead_lettered - dead_before,
            time.perf_counter() - started,
        )

    def _letters_for_refused(
        self,
        messages: Sequence[Any],
        records: list[Record],
        starts: list[int],
        refused: list[Refused],
    ) -> list[Record]:
        """One dead letter per message whose task Kafka refused as too large (reasons joined).

        A refused dead letter (an undecodable event too large for ``events.dlt``) cannot be
        parked anywhere: it is logged and dropped, the event stays in its topic's retention.
        """
        # Rare, so the lookup is built here rather than kept for every batch.
        position = {(r.topic, r.value): i for i, r in enumerate(records)}
        reasons: dict[int, list[str]] = {}
        for item in refused:
            record = item.record
            if record.topic != self._deliveries:
                log.error("dropping a record for %s: %s", record.topic, item.reason)
                continue
            index = position[(record.topic, record.value)]
            webhook = (record.key or b"").decode(errors="replace")
            reasons.setdefault(bisect_right(starts, index) - 1, []).append(
                f"delivery task for webhook {webhook} {item.reason}"
            )
        failed_at_ms = time.time_ns() // 1_000_000
        letters = []
        for message_index, why in sorted(reasons.items()):
            message = messages[message_index]
            reason = "; ".join(why)
            if len(reason) > _MAX_REASON:
                # An event with many refused tasks must not make its own dead letter too large.
                reason = f"{reason[:_MAX_REASON]}… ({len(why)} delivery tasks refused)"
            log.warning(
                "dead-lettering %s[%s]@%s: %s",
                message.topic,
                message.partition,
                message.offset,
                reason,
            )
            letters.append(self._dead_letter(message, reason, failed_at_ms))
        return letters

    async def _write_letters(self, letters: list[Record]) -> None:
        for item in await self._writer.write(letters):
            log.error("dropping a dead letter for %s: %s", item.record.topic, item.reason)

    async def _outputs_retrying(self, messages: Sequence[Any]) -> tuple[list[Record], list[int]]:
        delay = 0.2
        while True:
            try:
                return self._outputs(messages)
            except RegistryUnavailable as exc:
                # Stall the partition rather than dead-letter good events during an outage.
                log.warning("%s; retrying the batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self._writer.close()


def install_router(ctx: StreamsContext) -> RouterAgent:
    """Declare the router on ``ctx.app``; returns it (its counters serve diagnostics).

    The router reads the event topics as raw batches from the app's consumer
    (``streams.raw_batches``): one batch at a time, acked (then committed by Faust) only once
    :meth:`RouterAgent.process` returned, i.e. once Kafka acknowledged the batch's outputs.
    """
    agent = RouterAgent(ctx)
    app = cast(CommitSafeApp, ctx.app)
    app.read_raw(ctx.settings.topics.all_events, ctx.options.batch_size)
    log.info(
        "router: reading %d event topics as raw batches of up to %d records",
        len(app.raw_topics),
        app.raw_batch_size,
    )

    async def route() -> None:
        consumer = cast(CommitSafeConsumer, app.consumer)
        try:
            # aclosing: a failed batch must leave the generator at once (unacked, and a stop
            # waiting for the batch in flight is not kept waiting).
            async with contextlib.aclosing(consumer.raw_batches()) as batches:
                async for batch in batches:
                    await agent.process(batch.records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Nothing of the failed batch is acked: the worker stops, the next owner replays.
            log.critical("router failed: %r; stopping the worker", exc)
            await app.crash(exc)

    app.task(route)

    @ctx.app.page("/router/stats/")
    async def stats(web: Any, request: Any) -> Any:
        event_topics = set(ctx.settings.topics.all_events)
        assigned = [tp for tp in ctx.app.consumer.assignment() if tp.topic in event_topics]
        return web.json(
            {
                "assigned_partitions": len(assigned),
                "routed_events": agent.routed_events,
                "tasks_written": agent.tasks_written,
                "dead_lettered": agent.dead_lettered,
                "webhooks": len(ctx.webhooks.index),
            }
        )

    @ctx.app.page("/router/webhooks/{webhook_id}/")
    async def webhook_view(web: Any, request: Any, webhook_id: str) -> Any:
        # This worker's view of one webhook config (secrets are never part of it).
        webhook = ctx.webhooks.view.get(webhook_id)
        if webhook is None:
            return web.json({"error": f"webhook {webhook_id} unknown to this worker"}, status=404)
        return web.json(webhook.to_json_dict())

    return agent
