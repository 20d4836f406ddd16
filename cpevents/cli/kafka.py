"""``cpevents kafka start|stop|status`` and ``cpevents topics create``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from plumbing.kafka.clients import bootstrap
from plumbing.kafka.topic_admin import RAISE_REPLICATION_HINT, ensure_topics
from plumbing.settings import Settings

if TYPE_CHECKING:
    from cpevents.localkafka.broker import Security
    from cpevents.localkafka.cluster import ClusterStatus, LocalCluster

# The local broker (cpevents.localkafka) is dev-only tooling: each command imports it when run,
# so that loading the CLI for a production worker never does.
kafka_app = typer.Typer(help="Run the local Kafka broker (KRaft, from Maven Central jars).")
topics_app = typer.Typer(help="Manage the catalog's topics.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")


# The choices of LocalBroker.security, spelt here so that the CLI never imports the local broker
# module (dev-only tooling) just to build its help.
SecurityOption = Annotated[
    Literal["plaintext", "sasl_ssl"],
    typer.Option(
        "--security",
        help="plaintext, or sasl_ssl: clients must use TLS (a CA made for the broker) and "
        "SCRAM-SHA-512; their settings are written to a 0600 env file",
    ),
]


BrokersOption = Annotated[
    int,
    typer.Option(
        "--brokers",
        min=1,
        help="1: the single broker; 3: a local KRaft cluster of three combined "
        "broker+controller nodes (RF 3, min ISR 2; PLAINTEXT only), node N on "
        "CPEVENTS_KAFKA_PORT + 2(N-1), data in CPEVENTS_HOME/cluster/node-N",
    ),
]
NodeOption = Annotated[
    int | None,
    typer.Option("--node", min=1, help="only this node of the cluster (1-based)"),
]


@kafka_app.command("start")
def kafka_start(
    security: SecurityOption = "plaintext",
    brokers: BrokersOption = 1,
    node: NodeOption = None,
) -> None:
    """Start the local broker, or cluster, in the background (first run downloads Kafka with
    Maven); `--node N` starts one stopped node of the cluster again."""
    from cpevents.localkafka.broker import BrokerError

    settings = load_settings()
    # One node of the local cluster may be started whatever clients are pointed at.
    if settings.bootstrap_servers and node is None:
        err_console.print(
            f"CPEVENTS_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}); nothing to start."
        )
        raise typer.Exit(1)
    if (brokers > 1 or node is not None) and security != "plaintext":
        err_console.print("the local cluster is PLAINTEXT only (--security is for one broker)")
        raise typer.Exit(1)
    if brokers not in (1, 3):
        err_console.print("--brokers: 1 (a single broker) or 3 (a cluster)")
        raise typer.Exit(1)
    try:
        if node is not None:
            _start_node(settings, node)
        elif brokers == 1:
            _start_single(settings, security)
        else:
            _start_cluster(settings, brokers)
    except BrokerError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _start_single(settings: Settings, security: Security) -> None:
    from cpevents.localkafka.broker import BrokerError, default_broker
    from cpevents.localkafka.cluster import default_cluster

    if default_cluster(settings).running():
        raise BrokerError("the local cluster is running: `cpevents kafka stop` first")
    broker = default_broker(settings, security)
    with console.status("starting Kafka…"):
        broker.start()
    console.print(
        f"Kafka {settings.kafka_version} running on {broker.bootstrap_servers} "
        f"(pid {broker.running_pid()}, data in {broker.data_dir})"
    )
    if security != "plaintext":
        # The file holds the SCRAM password: point at it, never print it.
        console.print(
            f"{security.upper()} only; client settings (with the password) are in "
            f"{broker.client_env_file}:\n  set -a; . {broker.client_env_file}; set +a"
        )


def _start_cluster(settings: Settings, brokers: int) -> None:
    from cpevents.localkafka.broker import SECURITY_MODES, BrokerError, default_broker
    from cpevents.localkafka.cluster import default_cluster, node_ports, port_in_use

    if any(default_broker(settings, mode).running_pid() for mode in SECURITY_MODES):
        raise BrokerError("the single local broker is running: `cpevents kafka stop` first")
    cluster = default_cluster(settings, brokers)
    if not cluster.running():
        taken = [
            port
            for ports in node_ports(settings, brokers)
            for port in (ports.port, ports.controller_port)
            if port_in_use(port)
        ]
        if taken:
            raise BrokerError(
                f"ports {taken} are in use (another broker?); set CPEVENTS_KAFKA_PORT and "
                "CPEVENTS_KAFKA_CONTROLLER_PORT (node N uses each + 2(N-1))"
            )
    with console.status(f"starting a {brokers}-node Kafka cluster…"):
        cluster.start()
    console.print(
        f"Kafka {settings.kafka_version} cluster of {brokers} nodes running; "
        f"CPEVENTS_BOOTSTRAP_SERVERS={cluster.bootstrap_servers} (data in {cluster.root})"
    )


def _start_node(settings: Settings, node: int) -> None:
    from cpevents.localkafka.broker import BrokerError
    from cpevents.localkafka.cluster import default_cluster

    cluster = default_cluster(settings)
    if not cluster.state_file.exists():
        raise BrokerError("no local cluster: `cpevents kafka start --brokers 3` first")
    with console.status(f"starting node {node}…"):
        cluster.start_node(node)
    console.print(f"node {node} running (pid {cluster.node(node).running_pid()})")


@kafka_app.command("stop")
def kafka_stop(
    node: NodeOption = None,
    kill: Annotated[
        bool, typer.Option("--kill", help="SIGKILL instead of SIGTERM (a crash, for drills)")
    ] = False,
) -> None:
    """Stop the local broker or cluster started by `cpevents kafka start` (whatever its
    --security); `--node N` stops one node of the cluster."""
    from cpevents.localkafka.broker import SECURITY_MODES, BrokerError, default_broker
    from cpevents.localkafka.cluster import default_cluster

    settings = load_settings()
    cluster = default_cluster(settings)
    if node is not None:
        try:
            stopped = cluster.stop_node(node, kill=kill)
        except BrokerError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        verb = "killed" if kill else "stopped"
        console.print(f"node {node} {verb}" if stopped else f"node {node} was not running")
        return
    nodes = cluster.stop(kill=kill)
    single = [mode for mode in SECURITY_MODES if default_broker(settings, mode).stop()]
    if nodes:
        console.print(f"Kafka cluster stopped (nodes {', '.join(map(str, nodes))})")
    if single or not nodes:
        console.print("Kafka stopped" if single else "Kafka was not running")


@kafka_app.command("status")
def kafka_status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Report whether Kafka answers at the configured address (exit 1 if not); for the local
    cluster, each node: id, roles, ports, pid, alive, partitions it leads."""
    from cpevents.localkafka.cluster import default_cluster

    settings = load_settings()
    cluster = default_cluster(settings)
    if _shows_cluster(settings, cluster):
        status = cluster.status()
        if as_json:
            print(status.to_json())
        else:
            _print_cluster(status)
        if not status.reachable:
            raise typer.Exit(1)
        return
    _single_status(settings, as_json)


def _shows_cluster(settings: Settings, cluster: LocalCluster) -> bool:
    # The local cluster when clients use it: no address set (node 1 is on the default port),
    # or an address naming one of its nodes; and it runs, or it ran and the single broker
    # does not.
    if not cluster.state_file.exists():
        return False
    if settings.bootstrap_servers:
        ours = set(cluster.bootstrap_servers.split(","))
        if not ours & {a.strip() for a in settings.bootstrap_servers.split(",")}:
            return False
    return bool(cluster.running()) or _single_pid(settings) is None


def _single_pid(settings: Settings) -> int | None:
    from cpevents.localkafka.broker import SECURITY_MODES, default_broker

    pids = [default_broker(settings, mode).running_pid() for mode in SECURITY_MODES]
    return None if settings.bootstrap_servers else next((p for p in pids if p), None)


def _single_status(settings: Settings, as_json: bool) -> None:
    from cpevents.localkafka.broker import is_ready

    address = bootstrap(settings)
    pid = _single_pid(settings)
    ready = is_ready(settings)
    if as_json:
        state = {"bootstrap_servers": address, "reachable": ready, "pid": pid}
        print(json.dumps(state, indent=2))
    elif ready:
        suffix = f" (local broker, pid {pid})" if pid else ""
        console.print(f"Kafka is running at {address}{suffix}")
    else:
        console.print(f"Kafka is not reachable at {address}")
    if not ready:
        raise typer.Exit(1)


def _print_cluster(status: ClusterStatus) -> None:
    table = Table(title=f"Kafka cluster {status.cluster_id} ({status.bootstrap_servers})")
    for column in ("node", "roles", "port", "pid", "alive", "registered", "leads"):
        table.add_column(column)
    for node in status.nodes:
        table.add_row(
            str(node.node_id),
            node.roles,
            str(node.port),
            str(node.pid or "-"),
            "yes" if node.alive else "[red]no[/red]",
            "yes" if node.in_metadata else "no",
            str(node.leader_partitions),
        )
    console.print(table)
    if not status.reachable:
        console.print("[red]no node answers[/red]")
    elif status.under_replicated_partitions or status.offline_partitions:
        console.print(
            f"[yellow]{status.under_replicated_partitions} under-replicated, "
            f"{status.offline_partitions} offline partitions[/yellow]"
        )


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the catalog that does not exist yet (safe to rerun)."""
    settings = load_settings(check_kafka=True)
    results = ensure_topics(settings)
    for result in results:
        console.print(f"{'created' if result.created else 'exists '}  {result.name}")
    under = [result for result in results if result.under_replicated]
    for result in under:
        lacks = ", ".join(
            f"{key} {actual} < {wanted}"
            for key, (actual, wanted) in result.under_replicated.items()
        )
        console.print(f"[yellow]under-replicated[/yellow]  {result.name}: {lacks}")
    if under:
        console.print(
            f"[yellow]{len(under)} topics under-replicated[/yellow]: {RAISE_REPLICATION_HINT}"
        )
