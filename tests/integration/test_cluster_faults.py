"""Faults on a real three-broker cluster (issue 19): with RF 3, min ISR 2 (``auto``) and
acks=all, losing a broker or a worker loses no event.

These tests always start their own local KRaft cluster from the Maven jars (three combined
broker+controller nodes on free ports, ``tests/fixtures_cluster.py``), whatever
``CPEVENTS_BOOTSTRAP_SERVERS`` says: they kill its brokers. One pipeline (registry, gateway,
three routers, three delivery workers) serves every test of the module; each test has its own
tenants and webhooks (together on every partition of the events and deliveries topics) and
receiver path, and events flow until after its last fault. Times are printed as
``FIGURE <test> key=value`` lines (``pytest -s ... | grep FIGURE``), not asserted, beyond
bounds that only catch a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ResourceType,
)

from cpevents.localkafka.cluster import LocalCluster
from delivery.worker import group_id as delivery_group
from plumbing.kafka.clients import admin_config
from plumbing.kafka.topic_admin import FACTOR, MIN_INSYNC, ensure_topics
from streams.app import app_id as streams_group
from tests.conftest import make_settings
from tests.fixtures_cluster import (
    SESSION_TIMEOUT,
    Flow,
    Pipeline,
    busiest_node,
    delivered_ids,
    kafka_cluster,
    received,
    running_pipeline,
)
from tests.fixtures_delivery import Receiver, eventually

__all__ = ["kafka_cluster"]  # the fixture, imported to be found

INTERVAL = 0.1  # between events of a flow (sequential: a stalled publish pauses the flow)
AFTER = 15  # deliveries seen after a fault (or the last one) before the flow stops
HANG = 180.0  # bound that only catches a hang
#: Seconds a killed worker's partitions may take to be consumed again: its session timeout,
#: then a rebalance and a commit (wide: the machine is shared; the figure is printed).
CONSUMED_AGAIN_BOUND = SESSION_TIMEOUT * 3 + 10


def figure(test: str, **values: object) -> None:
    """One line of measured figures, ``FIGURE <test> key=value ...``, for
    ``pytest -s ... | grep FIGURE``."""
    text = " ".join(
        f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in values.items()
    )
    print(f"FIGURE {test} {text}", flush=True)


@pytest.fixture(scope="module")
def pipeline(
    kafka_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with running_pipeline(
        kafka_cluster, tmp_path_factory.mktemp("logs"), routers=3, deliveries=3
    ) as running:
        yield running


async def start_flow(pipeline: Pipeline, receiver: Receiver, path: str) -> Flow:
    """Tenants and webhooks on ``path`` covering every partition of the events and deliveries
    topics, and a first event of each delivered (every router has the webhooks in its view
    before the measured flow starts)."""
    flow = Flow(pipeline)
    await flow.cover_partitions(receiver.url(path))
    await flow.publish(len(flow.tenants), 0)
    await eventually(
        lambda: len(receiver.at(path)) >= len(flow.tenants), within=60, what="first deliveries"
    )
    return flow


async def deliveries_after(receiver: Receiver, path: str, count: int = AFTER) -> None:
    """Until ``count`` more POSTs than now reached ``path``."""
    mark = len(receiver.at(path)) + count
    await eventually(lambda: len(receiver.at(path)) >= mark, within=HANG, what="deliveries")


async def assert_all_delivered(flow: Flow, receiver: Receiver, path: str) -> dict[str, int]:
    """Every accepted event reaches the receiver; duplicates only with the same webhook-id.
    Returns the counts (events, posts, duplicates, publish retries)."""

    def seen() -> dict[str, set[str]]:
        return delivered_ids(received([(r.body, r.headers) for r in receiver.at(path)]))

    try:
        await eventually(
            lambda: set(flow.accepted) <= set(seen()), within=HANG, what="every event delivered"
        )
    except AssertionError:
        missing = set(flow.accepted) - set(seen())
        logs = flow.pipeline.logs()
        raise AssertionError(f"{len(missing)} lost: {sorted(missing)[:5]}\n{logs}") from None
    deliveries = seen()
    assert all(len(ids) == 1 for ids in deliveries.values()), deliveries
    assert all(event_id in ids for event_id, ids in deliveries.items())  # webhook-id = event id
    posts = len(receiver.at(path))
    return {
        "events": len(flow.accepted),
        "lost": 0,
        "posts": posts,
        "duplicates": posts - len(deliveries),
        "publish_retries": flow.publish_retries,
    }


def resume_after(fault_at: float, flow_start: float, receiver: Receiver, path: str) -> float:
    """Seconds from ``fault_at`` to the first delivery received after it that follows a pause
    (the first POST after the longest gap since the fault)."""
    times = sorted(r.at for r in receiver.at(path) if r.at >= flow_start)
    after = [t for t in times if t >= fault_at]
    if not after:
        return float("nan")
    before = [t for t in times if t < fault_at]
    points = ([before[-1]] if before else [fault_at]) + after
    gaps = [(b - a, b) for a, b in itertools.pairwise(points)]
    _, resumed = max(gaps) if gaps else (0.0, after[0])
    return resumed - fault_at


async def test_sigkill_of_the_busiest_broker_loses_nothing(
    kafka_cluster: LocalCluster, pipeline: Pipeline, receiver: Receiver
) -> None:
    path = "/broker-kill"
    flow = await start_flow(pipeline, receiver, path)
    started = time.time()
    done = asyncio.Event()
    publishing = asyncio.create_task(flow.publish(None, INTERVAL, until=done))
    await eventually(lambda: len(receiver.at(path)) > 20, within=60, what="the flow")
    node = await asyncio.to_thread(busiest_node, kafka_cluster)
    killed_at = time.time()
    await asyncio.to_thread(kafka_cluster.stop_node, node, True)
    await deliveries_after(receiver, path)
    resumed = resume_after(killed_at, started, receiver, path)
    # The node comes back while events still flow: its replicas catch up under load.
    await asyncio.to_thread(kafka_cluster.start_node, node)
    await asyncio.to_thread(kafka_cluster.wait_in_sync, HANG)
    back = time.time() - killed_at
    await deliveries_after(receiver, path)
    done.set()
    await publishing
    counts = await assert_all_delivered(flow, receiver, path)
    figure("broker-kill", node=node, resumed_after_s=resumed, back_in_isr_s=back, **counts)


async def test_rolling_restart_under_load_loses_nothing(
    kafka_cluster: LocalCluster, pipeline: Pipeline, receiver: Receiver
) -> None:
    path = "/rolling"
    flow = await start_flow(pipeline, receiver, path)
    done = asyncio.Event()
    publishing = asyncio.create_task(flow.publish(None, INTERVAL, until=done))
    await eventually(lambda: len(receiver.at(path)) > 10, within=60, what="the flow")
    for node in kafka_cluster.node_ids:
        began = time.monotonic()
        await asyncio.to_thread(kafka_cluster.stop_node, node)
        stopped = time.monotonic() - began
        await asyncio.to_thread(kafka_cluster.start_node, node)
        await asyncio.to_thread(kafka_cluster.wait_in_sync, HANG)
        back = time.monotonic() - began
        figure("rolling-restart", node=node, stopped_s=stopped, back_in_isr_s=back)
    await deliveries_after(receiver, path)
    done.set()
    await publishing
    figure("rolling-restart", **await assert_all_delivered(flow, receiver, path))


def group_progress(pipeline: Pipeline, group: str, topic: str) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on every partition of ``topic`` (negative:
    none yet)."""
    admin = AdminClient(admin_config(pipeline.settings, log_level=0))
    partitions = [TopicPartition(topic, p) for p in range(pipeline.settings.partitions)]
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)])
    committed = result[group].result(timeout=10).topic_partitions
    return {tp.partition: tp.offset for tp in committed}


async def consumed_again(pipeline: Pipeline, group: str, topic: str) -> float:
    """Read right after a worker of ``group`` was killed (it commits nothing more): seconds
    until every partition of ``topic`` has a committed offset past the one it had, i.e. each
    partition of the killed worker was consumed again by a live one. Fails, naming the
    partitions, after :data:`CONSUMED_AGAIN_BOUND`."""
    began = time.monotonic()
    before = await asyncio.to_thread(group_progress, pipeline, group, topic)
    stuck = sorted(before)
    while stuck:
        if time.monotonic() - began > CONSUMED_AGAIN_BOUND:
            raise AssertionError(
                f"{group}: partitions {stuck} of {topic} not consumed again within "
                f"{CONSUMED_AGAIN_BOUND}s (committed {before})\n{pipeline.logs()}"
            )
        await asyncio.sleep(0.3)
        with contextlib.suppress(KafkaException):
            now = await asyncio.to_thread(group_progress, pipeline, group, topic)
            stuck = [p for p in stuck if now.get(p, -1) <= before[p]]
    return time.monotonic() - began


async def test_worker_kills_on_a_schedule_lose_nothing(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    path = "/workers"
    flow = await start_flow(pipeline, receiver, path)
    settings = pipeline.settings
    done = asyncio.Event()
    publishing = asyncio.create_task(flow.publish(None, INTERVAL, until=done))
    await eventually(lambda: len(receiver.at(path)) > 10, within=60, what="the flow")
    pipeline.kill("router-1")
    routers = asyncio.create_task(
        consumed_again(pipeline, streams_group(settings), settings.topics.events("deploy"))
    )
    await asyncio.sleep(1.5)
    pipeline.kill("delivery-1")
    deliveries = asyncio.create_task(
        consumed_again(pipeline, delivery_group(settings), settings.topics.deliveries)
    )
    router_s, delivery_s = await asyncio.gather(routers, deliveries)
    pipeline.restart("router-1")
    pipeline.restart("delivery-1")
    # Both rejoin (a rebalance of each group) while events flow.
    await asyncio.to_thread(pipeline.wait_members, streams_group(settings), 3)
    await asyncio.to_thread(pipeline.wait_members, delivery_group(settings), 3)
    await deliveries_after(receiver, path)
    done.set()
    await publishing
    counts = await assert_all_delivered(flow, receiver, path)
    figure(
        "worker-kills",
        router_partitions_consumed_again_s=router_s,
        delivery_partitions_consumed_again_s=delivery_s,
        session_timeout_s=SESSION_TIMEOUT,
        **counts,
    )


async def test_registry_serves_reads_with_a_broker_down_and_writes_after_leader_moves(
    kafka_cluster: LocalCluster, pipeline: Pipeline
) -> None:
    subject = f"faults-{uuid.uuid4().hex[:8]}-value"

    def schema(version: int) -> dict[str, str]:
        fields = [{"name": f"f{n}", "type": "string", "default": ""} for n in range(version)]
        record = {"type": "record", "name": "R", "fields": fields}
        return {"schema": json.dumps(record)}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(
            f"{pipeline.registry}/subjects/{subject}/versions", json=schema(1)
        ) as r:
            assert r.status == 200, await r.text()
            schema_id = (await r.json())["id"]
        metadata = await asyncio.to_thread(kafka_cluster.metadata)
        assert metadata is not None
        leader = metadata.topics[pipeline.settings.registry_topic].partitions[0].leader
        await asyncio.to_thread(kafka_cluster.stop_node, leader, True)
        try:
            for url in (f"/schemas/ids/{schema_id}", f"/subjects/{subject}/versions/latest"):
                async with http.get(f"{pipeline.registry}{url}") as r:
                    assert r.status == 200, await r.text()
            began = time.monotonic()
            status, attempts = 0, 0
            while status != 200:
                assert time.monotonic() - began < HANG, "no registry write after the leader moved"
                attempts += 1
                try:
                    async with http.post(
                        f"{pipeline.registry}/subjects/{subject}/versions", json=schema(2)
                    ) as r:
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                if status != 200:
                    await asyncio.sleep(0.5)
            figure(
                "registry",
                node=leader,
                write_accepted_after_s=time.monotonic() - began,
                attempts=attempts,
            )
            async with http.get(f"{pipeline.registry}/subjects/{subject}/versions") as r:
                assert await r.json() == [1, 2]
        finally:
            await asyncio.to_thread(kafka_cluster.start_node, leader)
            await asyncio.to_thread(kafka_cluster.wait_in_sync, HANG)


def test_topics_get_rf3_and_min_isr2_and_older_ones_are_reported(
    kafka_cluster: LocalCluster,
) -> None:
    older = make_settings(
        kafka_cluster.bootstrap_servers, replication_factor=1, min_insync_replicas=1
    )
    ensure_topics(older)  # as before issue 19: one replica
    auto = older.model_copy(update={"replication_factor": "auto", "min_insync_replicas": "auto"})
    results = ensure_topics(auto)
    assert results and all(
        r.under_replicated == {FACTOR: (1, 3), MIN_INSYNC: (1, 2)} for r in results
    )
    fresh = auto.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    created = ensure_topics(fresh)
    assert all(r.created and not r.under_replicated for r in created)
    admin = AdminClient(admin_config(fresh, log_level=0))
    metadata = admin.list_topics(timeout=10)
    names = [r.name for r in created]
    assert {len(p.replicas) for n in names for p in metadata.topics[n].partitions.values()} == {3}
    configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    assert {f.result()[MIN_INSYNC].value for f in configs.values()} == {"2"}
    assert ensure_topics(fresh) and all(not r.under_replicated for r in ensure_topics(fresh))
