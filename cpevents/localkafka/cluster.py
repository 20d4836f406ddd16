"""A local KRaft cluster of combined broker+controller nodes, each a :class:`LocalBroker`.

Every node runs ``process.roles=broker,controller`` and votes in a static controller quorum
(``controller.quorum.voters``): with three nodes, one may be lost (killed, restarted) while the
other two keep both the metadata quorum and every partition (RF 3, min ISR 2) writable. Each
node has its own data directory and loopback ports; listeners are PLAINTEXT only (a dev and
test cluster: the SASL_SSL listener is the single broker's, ``LocalBroker(security=...)``).

``cpevents kafka start --brokers 3`` runs one under ``settings.home / "cluster"``; the fault
tests run throwaway ones on free ports (``tests/fixtures_cluster.py``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
)

from cpevents.localkafka.broker import (
    BrokerError,
    LocalBroker,
    ensure_jars,
    formatted_cluster_id,
    new_cluster_id,
)
from plumbing.kafka.clients import admin_config
from plumbing.settings import Settings

#: Heap of each node: three JVMs share the machine with the pipeline (the single broker's
#: 1 GB default is for test sessions that create thousands of topics on one node).
NODE_HEAP = "384m"
ROLES = "broker,controller"


@dataclass(frozen=True)
class NodePorts:
    """The loopback ports of one node."""

    port: int
    controller_port: int


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``cpevents kafka status`` shows it."""

    node_id: int
    roles: str
    port: int
    controller_port: int
    pid: int | None
    alive: bool
    #: Listed as a broker in the cluster's metadata (registered and not fenced).
    in_metadata: bool
    leader_partitions: int
    data_dir: str


@dataclass(frozen=True)
class ClusterStatus:
    """The cluster's id and nodes, with the partitions whose replicas are not all in sync."""

    cluster_id: str | None
    bootstrap_servers: str
    reachable: bool
    under_replicated_partitions: int
    offline_partitions: int
    nodes: list[NodeStatus]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def leader_counts(metadata: ClusterMetadata) -> dict[int, int]:
    """Broker id -> number of partitions it leads, over every topic in ``metadata``."""
    counts: dict[int, int] = dict.fromkeys(metadata.brokers, 0)
    for topic in metadata.topics.values():
        for partition in topic.partitions.values():
            if partition.leader >= 0:
                counts[partition.leader] = counts.get(partition.leader, 0) + 1
    return counts


def replication_health(metadata: ClusterMetadata) -> tuple[int, int]:
    """(under-replicated, offline) partition counts: fewer in-sync replicas than replicas, and
    no leader at all."""
    under = offline = 0
    for topic in metadata.topics.values():
        for partition in topic.partitions.values():
            if partition.leader < 0:
                offline += 1
            if len(partition.isrs) < len(partition.replicas):
                under += 1
    return under, offline


@dataclass
class LocalCluster:
    """Nodes 1..N of one KRaft cluster on loopback, node N's data in ``root / "node-N"``."""

    settings: Settings
    root: Path
    ports: list[NodePorts]
    tie_to_parent: bool = False
    heap: str = NODE_HEAP
    #: Nodes start with :data:`~cpevents.localkafka.broker.QUICK_JVM` flags (test clusters).
    quick_jvm: bool = False

    @property
    def size(self) -> int:
        return len(self.ports)

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.size + 1))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{ports.port}" for ports in self.ports)

    @property
    def state_file(self) -> Path:
        """Node count and ports, so that later commands (``start --node N``) find the cluster."""
        return self.root / "cluster.json"

    def node(self, node_id: int) -> LocalBroker:
        """The :class:`LocalBroker` of node ``node_id`` (1-based)."""
        if node_id not in self.node_ids:
            raise BrokerError(f"no node {node_id}: the cluster has nodes {self.node_ids}")
        ports = self.ports[node_id - 1]
        return LocalBroker(
            settings=self.settings,
            data_dir=self.root / f"node-{node_id}",
            port=ports.port,
            controller_port=ports.controller_port,
            tie_to_parent=self.tie_to_parent,
            node_id=node_id,
            voters={n: p.controller_port for n, p in enumerate(self.ports, start=1)},
            cluster_id=self._cluster_id(),
            heap=self.heap,
            quick_jvm=self.quick_jvm,
        )

    def _cluster_id(self) -> str | None:
        # Every node must be formatted with the same id: the one a node already has, else the
        # one the state file remembers (written before any node is formatted).
        for node_id in self.node_ids:
            known = formatted_cluster_id(self.root / f"node-{node_id}" / "logs")
            if known is not None:
                return known
        with contextlib.suppress(OSError, ValueError, KeyError):
            stored: str = json.loads(self.state_file.read_text())["cluster_id"]
            return stored
        return None

    def _write_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {
            "cluster_id": self._cluster_id() or new_cluster_id(),
            "ports": [[p.port, p.controller_port] for p in self.ports],
        }
        self.state_file.write_text(json.dumps(state))

    def client_settings(self) -> Settings:
        """``settings`` pointed at this cluster (PLAINTEXT)."""
        return (
            self.node(1)
            .client_settings()
            .model_copy(update={"bootstrap_servers": self.bootstrap_servers})
        )

    def metadata(self, timeout: float = 5.0) -> ClusterMetadata | None:
        """The cluster's metadata, or None when no node answers."""
        admin = AdminClient(admin_config(self.client_settings(), log_level=0))
        try:
            return admin.list_topics(timeout=timeout)
        except Exception:
            return None

    def running(self) -> dict[int, int]:
        """Node id -> pid of the nodes whose JVM is alive."""
        pids = {n: self.node(n).running_pid() for n in self.node_ids}
        return {n: pid for n, pid in pids.items() if pid is not None}

    def start(self, timeout: float = 180.0) -> None:
        """Start every node that is not running (together: none serves before a quorum) and
        return once the cluster's metadata lists all of them."""
        ensure_jars(self.settings)
        self._write_state()
        stopped = [n for n in self.node_ids if self.node(n).running_pid() is None]
        # Formatting is a JVM start per node: side by side. The JVMs themselves start from
        # this thread (see LocalBroker.launch).
        with ThreadPoolExecutor(max_workers=max(1, len(stopped))) as pool:
            list(pool.map(lambda n: self.node(n).prepare(), stopped))
        processes = {n: self.node(n).launch(prepared=True) for n in stopped}
        self._wait(lambda md: set(self.node_ids) <= set(md.brokers), processes, timeout)

    def start_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Start one stopped node and return once the cluster lists it as a broker again."""
        node = self.node(node_id)
        if node.running_pid() is not None:
            return
        self._write_state()
        process = node.launch()
        # Asked of the node itself: the others may still list it, unfenced, for the broker
        # session timeout after a kill. A restarted broker serves once it is unfenced.
        self._wait(lambda _: self._serves(node), {node_id: process}, timeout)

    @staticmethod
    def _serves(node: LocalBroker) -> bool:
        admin = AdminClient(admin_config(node.client_settings(), log_level=0))
        try:
            metadata = admin.list_topics(timeout=1.0)
        except Exception:
            return False
        return node.node_id in metadata.brokers

    def _wait(
        self,
        done: Callable[[ClusterMetadata], bool],
        processes: dict[int, subprocess.Popen[bytes]],
        timeout: float,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node_id, process in processes.items():
                try:
                    self.node(node_id).check_alive(process)
                except BrokerError:
                    self.stop()
                    raise
            metadata = self.metadata(timeout=1.0)
            if metadata is not None and done(metadata):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the Kafka cluster did not form within {timeout:.0f}s")

    def stop_node(self, node_id: int, kill: bool = False, timeout: float = 30.0) -> bool:
        """Stop one node: SIGTERM (controlled shutdown, leaders move first), or SIGKILL with
        ``kill`` (a crash, for fault drills). False if it was not running."""
        node = self.node(node_id)
        return node.kill() if kill else node.stop(timeout)

    def stop(self, kill: bool = False, timeout: float = 30.0) -> list[int]:
        """Stop every running node (side by side: one by one, the last ones would wait on a
        quorum already gone); the ids of those that were running."""
        running = list(self.running())
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            list(pool.map(lambda n: self.stop_node(n, kill, timeout), running))
        return running

    def wait_in_sync(self, timeout: float = 60.0) -> None:
        """Return once every partition has all its replicas in sync (after a node restart)."""
        deadline = time.monotonic() + timeout
        under = offline = -1
        while time.monotonic() < deadline:
            metadata = self.metadata(timeout=2.0)
            if metadata is not None:
                under, offline = replication_health(metadata)
                if under == 0 and offline == 0:
                    return
            time.sleep(0.2)
        raise BrokerError(
            f"partitions still out of sync after {timeout:.0f}s "
            f"({under} under-replicated, {offline} offline)"
        )

    def status(self) -> ClusterStatus:
        """Each node's process and its place in the cluster's metadata."""
        running = self.running()
        metadata = self.metadata(timeout=3.0) if running else None
        leaders = leader_counts(metadata) if metadata is not None else {}
        under, offline = replication_health(metadata) if metadata is not None else (0, 0)
        nodes = [
            NodeStatus(
                node_id=n,
                roles=ROLES,
                port=self.ports[n - 1].port,
                controller_port=self.ports[n - 1].controller_port,
                pid=running.get(n),
                alive=n in running,
                in_metadata=metadata is not None and n in metadata.brokers,
                leader_partitions=leaders.get(n, 0),
                data_dir=str(self.root / f"node-{n}"),
            )
            for n in self.node_ids
        ]
        return ClusterStatus(
            cluster_id=metadata.cluster_id if metadata is not None else self._cluster_id(),
            bootstrap_servers=self.bootstrap_servers,
            reachable=metadata is not None,
            under_replicated_partitions=under,
            offline_partitions=offline,
            nodes=nodes,
        )


def node_ports(settings: Settings, size: int) -> list[NodePorts]:
    """The fixed ports of ``cpevents kafka start --brokers N``: node 1 on the single broker's
    (``CPEVENTS_KAFKA_PORT``, so that clients without ``CPEVENTS_BOOTSTRAP_SERVERS`` reach it),
    node N two ports further per node."""
    return [
        NodePorts(settings.kafka_port + 2 * i, settings.kafka_controller_port + 2 * i)
        for i in range(size)
    ]


def default_cluster(settings: Settings, size: int | None = None) -> LocalCluster:
    """The cluster ``cpevents kafka start --brokers N`` manages, under ``settings.home``.

    ``size`` None: the one started before (its ports as they were), else 3 nodes on the
    configured ports.
    """
    root = settings.home / "cluster"
    if size is None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads((root / "cluster.json").read_text())
            ports = [NodePorts(int(port), int(ctrl)) for port, ctrl in state["ports"]]
            return LocalCluster(settings=settings, root=root, ports=ports)
        size = 3
    return LocalCluster(settings=settings, root=root, ports=node_ports(settings, size))


def port_in_use(port: int) -> bool:
    """True if something accepts connections on ``127.0.0.1:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
