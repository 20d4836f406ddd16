"""The local broker's cluster id: reused across restarts, and never taken for an option."""

from __future__ import annotations

from pathlib import Path

from cpevents.localkafka.broker import _kafka_cluster_id


def test_a_new_cluster_id_never_starts_with_a_dash(tmp_path: Path) -> None:
    # Kafka's storage tool reads "-t -AbC..." as an unknown option: one id in 64 broke start-up.
    ids = {_kafka_cluster_id(tmp_path) for _ in range(5000)}
    assert len(ids) == 5000
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert all(len(cluster_id) == 22 for cluster_id in ids)


def test_formatted_storage_keeps_its_cluster_id(tmp_path: Path) -> None:
    properties = ["#Sat Nov 28 20:35:10 UTC 2026", "node.id=1", "cluster.id=9zYiJ7cWRCKLSwmuTjCEuQ"]
    (tmp_path / "meta.properties").write_text("\n".join(properties) + "\n")
    assert _kafka_cluster_id(tmp_path) == "9zYiJ7cWRCKLSwmuTjCEuQ"
