"""The local three-node cluster's configuration and status logic (issue 19), without a JVM."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from cpevents.localkafka.broker import (
    CLUSTER_TIMINGS,
    QUICK_JVM,
    SERVER_JVM,
    LocalBroker,
    class_archive,
    internal_replication,
)
from cpevents.localkafka.cluster import (
    LocalCluster,
    NodePorts,
    default_cluster,
    leader_counts,
    node_ports,
    replication_health,
)
from plumbing.settings import Settings


def properties(broker: LocalBroker) -> dict[str, str]:
    text = broker._write_config().read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def cluster(tmp_path: Path) -> LocalCluster:
    ports = [NodePorts(9100 + 2 * n, 9101 + 2 * n) for n in range(3)]
    return LocalCluster(settings=Settings(), root=tmp_path, ports=ports)


def test_a_single_broker_keeps_its_standalone_configuration(tmp_path: Path) -> None:
    config = properties(LocalBroker(Settings(), tmp_path, port=9092, controller_port=9093))
    assert config["node.id"] == "1"
    assert config["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in config
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.min.isr"] == "1"
    assert "default.replication.factor" not in config
    assert not CLUSTER_TIMINGS.keys() & config.keys()  # Kafka's defaults


def test_cluster_nodes_share_a_static_quorum_and_replicate_internal_topics(
    tmp_path: Path,
) -> None:
    nodes = cluster(tmp_path)
    configs = [properties(nodes.node(n)) for n in nodes.node_ids]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    voters = {c["controller.quorum.voters"] for c in configs}
    assert voters == {"1@127.0.0.1:9101,2@127.0.0.1:9103,3@127.0.0.1:9105"}
    for config in configs:
        assert config["process.roles"] == "broker,controller"
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["transaction.state.log.replication.factor"] == "3"
        assert config["transaction.state.log.min.isr"] == "2"
        assert config["default.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["broker.session.timeout.ms"] == "3000"
        assert config["broker.heartbeat.interval.ms"] == "500"
    assert configs[1]["listeners"].startswith("PLAINTEXT://127.0.0.1:9102,")
    assert nodes.node(2).data_dir == tmp_path / "node-2"


def test_a_two_node_cluster_keeps_internal_topics_writable_with_one_node_down(
    tmp_path: Path,
) -> None:
    ports = [NodePorts(9200 + 2 * n, 9201 + 2 * n) for n in range(2)]
    nodes = LocalCluster(settings=Settings(), root=tmp_path, ports=ports)
    for config in (properties(nodes.node(n)) for n in nodes.node_ids):
        assert config["offsets.topic.replication.factor"] == "2"
        assert config["transaction.state.log.replication.factor"] == "2"
        assert config["transaction.state.log.min.isr"] == "1"
        assert config["share.coordinator.state.topic.min.isr"] == "1"
        assert config["default.replication.factor"] == "2"
        assert config["min.insync.replicas"] == "1"


def java_binary() -> str:
    java = shutil.which("java")
    assert java is not None
    return java


def jvm_flags(broker: LocalBroker, libs: Path, main: str = "kafka.Kafka") -> list[str]:
    command = broker._java_command(libs, main)
    return command[1 : command.index("-cp")]


def test_quick_nodes_start_on_c1_the_serial_gc_and_a_shared_class_archive(
    tmp_path: Path,
) -> None:
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    nodes = LocalCluster(
        settings=Settings(home=tmp_path),
        root=tmp_path,
        ports=[NodePorts(9100 + 2 * n, 9101 + 2 * n) for n in range(3)],
        quick_jvm=True,
    )
    first, second = nodes.node(1), nodes.node(2)
    flags = jvm_flags(first, libs)
    assert set(QUICK_JVM) <= set(flags) and not set(SERVER_JVM) & set(flags)
    assert "-Xmx384m" in flags
    # No archive yet: node 1 writes one at exit, the others start without.
    assert f"-XX:ArchiveClassesAtExit={first.data_dir / 'classes.jsa'}" in flags
    assert not [f for f in jvm_flags(second, libs) if "Archive" in f]
    java = jvm_flags(first, libs, "kafka.tools.StorageTool")
    assert "-XX:TieredStopAtLevel=1" in java and not [f for f in java if "Archive" in f]

    archive = class_archive(libs, java_binary())
    archive.write_bytes(b"jsa")
    for node in (first, second):
        assert f"-XX:SharedArchiveFile={archive}" in jvm_flags(node, libs)


def test_a_long_lived_node_keeps_the_server_jvm(tmp_path: Path) -> None:
    flags = jvm_flags(cluster(tmp_path).node(1), tmp_path)
    assert set(SERVER_JVM) <= set(flags) and not [f for f in flags if "Archive" in f]


def test_the_class_archive_is_kept_after_a_clean_exit_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    libs = tmp_path / f"kafka-{settings.kafka_version}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").touch()
    broker = LocalBroker(settings, tmp_path / "node-1", port=9100, controller_port=9101)
    broker.data_dir.mkdir()
    dumped = broker.data_dir / "classes.jsa"
    archive = class_archive(libs, java_binary())
    dumped.write_bytes(b"half")
    broker._keep_class_archive(clean_exit=False)
    assert not dumped.exists() and not archive.exists()
    dumped.write_bytes(b"jsa")
    broker._keep_class_archive(clean_exit=True)
    assert not dumped.exists() and archive.read_bytes() == b"jsa"
    dumped.write_bytes(b"other")  # a later dump never replaces the archive in use
    broker._keep_class_archive(clean_exit=True)
    assert archive.read_bytes() == b"jsa"


def test_internal_replication_follows_the_voter_count() -> None:
    assert internal_replication(1) == (1, 1)
    assert internal_replication(2) == (2, 1)
    assert internal_replication(3) == (3, 2)
    assert internal_replication(5) == (3, 2)


def test_cli_ports_put_node_one_on_the_single_brokers_port() -> None:
    settings = Settings(kafka_port=19092, kafka_controller_port=19093)
    assert node_ports(settings, 3) == [
        NodePorts(19092, 19093),
        NodePorts(19094, 19095),
        NodePorts(19096, 19097),
    ]


def test_the_cluster_is_found_again_from_its_state_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = default_cluster(settings, 3)
    first._write_state()
    again = default_cluster(settings.model_copy(update={"kafka_port": 1}))
    assert again.ports == first.ports
    assert again._cluster_id() == first._cluster_id() is not None
    assert again.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"


def partition(leader: int, replicas: list[int], isrs: list[int]) -> SimpleNamespace:
    return SimpleNamespace(leader=leader, replicas=replicas, isrs=isrs)


def test_leaders_and_replication_health_from_metadata() -> None:
    metadata = SimpleNamespace(
        brokers={1: None, 2: None, 3: None},
        topics={
            "a": SimpleNamespace(
                partitions={
                    0: partition(1, [1, 2, 3], [1, 2, 3]),
                    1: partition(1, [1, 2, 3], [1, 3]),
                    2: partition(-1, [2], []),
                }
            ),
            "b": SimpleNamespace(partitions={0: partition(3, [3, 1, 2], [3, 1, 2])}),
        },
    )
    assert leader_counts(metadata) == {1: 2, 2: 0, 3: 1}  # type: ignore[arg-type]
    assert replication_health(metadata) == (2, 1)  # type: ignore[arg-type]
