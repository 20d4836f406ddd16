"""The platform for the soak (and bench/scaling.py), built from cpevents/stack.py's LocalStack.

The registry and the gateway run in one LocalStack; every router and delivery worker runs in a
LocalStack of its own, so one can be SIGKILLed and a new one started in its place without
touching the others (LocalStack has no public way to restart one of its services). All of them
share the settings, the secret key and the admin token.

Broker faults go through the local cluster's CLI only (``cpevents kafka status --json``,
``cpevents kafka stop --node N --kill``, ``cpevents kafka start --node N``), run as
subprocesses, so nothing here depends on how the cluster is made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpevents.cli.dev import platform_services
from cpevents.localkafka.broker import free_port
from cpevents.stack import LocalStack, Service, StackPorts
from plumbing.settings import Settings

ROUTER = "streams"
DELIVERY = "delivery"


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (/proc/<pid>/stat), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name (which may hold spaces) start after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def only(*names: str) -> Callable[[Settings, StackPorts], list[Service]]:
    """The platform's services (cpevents/cli/dev.py) of the given names."""

    def services(settings: Settings, ports: StackPorts) -> list[Service]:
        return [s for s in platform_services(settings, ports) if s.name in names]

    return services


@dataclass
class Worker:
    """One router or delivery worker in its own LocalStack."""

    kind: str
    index: int
    stack: LocalStack
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index}"

    @property
    def pid(self) -> int | None:
        services = self.stack.services
        process = services[0].process if services else None
        return None if process is None or process.poll() is not None else process.pid


@dataclass
class SoakPlatform:
    """Registry + gateway, and the workers; ``settings`` are what the services run with."""

    base: Settings
    log_dir: Path
    extra_env: Mapping[str, str]
    routers: int
    deliveries: int
    ephemeral_kafka: bool = True
    core: LocalStack | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        assert self.core is not None
        return self.core.settings

    @property
    def gateway_url(self) -> str:
        assert self.core is not None
        return f"http://127.0.0.1:{self.core.ports.gateway}"

    def start(self, on_progress: Callable[[str], None]) -> None:
        ports = StackPorts.free()
        self.core = LocalStack(
            self.base, only("registry", "gateway"), ports, self.log_dir, self.extra_env,
            ephemeral_kafka=self.ephemeral_kafka,
        )  # fmt: skip
        self.core.start(on_progress)
        for index in range(self.routers):
            self.workers.append(self._start_worker(ROUTER, index, on_progress))
        for index in range(self.deliveries):
            self.workers.append(self._start_worker(DELIVERY, index, on_progress))

    def _start_worker(self, kind: str, index: int, on_progress: Callable[[str], None]) -> Worker:
        assert self.core is not None
        ports = StackPorts(
            registry=self.core.ports.registry,
            gateway=self.core.ports.gateway,
            streams_web=free_port(),
            delivery_web=free_port(),
        )
        # The core's settings carry the Kafka it resolved (a throwaway one included).
        stack = LocalStack(
            self.core.settings, only(kind), ports, self.log_dir / f"{kind}-{index}",
            self.extra_env,
        )  # fmt: skip
        stack.start(lambda message: on_progress(f"{kind}-{index}: {message}"))
        return Worker(kind, index, stack)

    def of_kind(self, kind: str) -> list[Worker]:
        return [w for w in self.workers if w.kind == kind]

    def kill(self, worker: Worker) -> None:
        """SIGKILL the worker's process (no clean shutdown, no commit, no leave-group)."""
        if worker.pid is not None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.stack.stop()

    def restart(self, worker: Worker, on_progress: Callable[[str], None]) -> None:
        """Start a new process in the place of ``worker`` (after :meth:`kill`)."""
        fresh = self._start_worker(worker.kind, worker.index, on_progress)
        worker.stack = fresh.stack
        worker.restarts += 1

    def signal_all(self, kind: str, signum: int) -> None:
        """Send ``signum`` to every worker of ``kind`` (SIGSTOP/SIGCONT in bench/scaling.py)."""
        for worker in self.of_kind(kind):
            if worker.pid is not None:
                os.kill(worker.pid, signum)

    def pids(self) -> dict[str, int]:
        """Process id of every service, by name (registry, gateway, streams-0, …)."""
        found: dict[str, int] = {}
        if self.core is not None:
            for service in self.core.services:
                if service.process is not None:
                    found[service.name] = service.process.pid
        for worker in self.workers:
            if worker.pid is not None:
                found[worker.name] = worker.pid
        return found

    def stop(self) -> None:
        for worker in reversed(self.workers):
            worker.stack.stop()
        if self.core is not None:
            self.core.stop()


# -- the local three-broker cluster, through its CLI ----------------------------------------------


class ClusterError(RuntimeError):
    """The local cluster is not there or did not do what was asked."""


def _cli_env() -> dict[str, str]:
    # `cpevents kafka` refuses to manage a local broker while CPEVENTS_BOOTSTRAP_SERVERS is set.
    return {k: v for k, v in os.environ.items() if k != "CPEVENTS_BOOTSTRAP_SERVERS"}


def cluster_cli(*args: str, timeout: float = 180) -> str:
    """Run ``cpevents kafka <args>`` and return its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "cpevents", "kafka", *args],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"cpevents kafka {' '.join(args)}: exit {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")  # fmt: skip
    return done.stdout


def _nodes(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict):
        document = document.get("nodes", document.get("brokers", []))
    return [node for node in document if isinstance(node, dict)]


def node_id(node: Mapping[str, Any]) -> int:
    return int(node.get("node_id", node.get("id", node.get("node", -1))))


def leader_count(node: Mapping[str, Any]) -> int:
    for name in ("leader_partitions", "leaders", "leader_partition_count", "leader_count"):
        if name in node:
            value = node[name]
            return len(value) if isinstance(value, list) else int(value or 0)
    return 0


def cluster_status() -> list[dict[str, Any]]:
    """``cpevents kafka status --json``'s nodes."""
    return _nodes(json.loads(cluster_cli("status", "--json")))


def cluster_bootstrap() -> str:
    """Bootstrap servers of the running local cluster (every node that is alive)."""
    try:
        nodes = cluster_status()
    except (ClusterError, ValueError) as exc:
        raise ClusterError(f"no local cluster ({exc}); start one: cpevents kafka start "
                           "--brokers 3") from None  # fmt: skip
    alive = [n for n in nodes if n.get("alive", True) and n.get("port")]
    if len(alive) < 3:
        raise ClusterError(f"{len(alive)} cluster node(s) alive, 3 needed: cpevents kafka start "
                           "--brokers 3")  # fmt: skip
    return ",".join(f"127.0.0.1:{n['port']}" for n in alive)


def busiest_node() -> int:
    """The node leading the most partitions now."""
    nodes = [n for n in cluster_status() if n.get("alive", True)]
    if not nodes:
        raise ClusterError("no cluster node alive")
    return node_id(max(nodes, key=leader_count))


def kill_node(node: int) -> None:
    cluster_cli("stop", "--node", str(node), "--kill")


def start_node(node: int) -> None:
    cluster_cli("start", "--node", str(node), timeout=300)


def wait_node_alive(node: int, within: float = 120) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if any(node_id(n) == node and n.get("alive") for n in cluster_status()):
                return True
        except ClusterError:
            pass
        time.sleep(1)
    return False
