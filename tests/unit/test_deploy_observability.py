"""deploy/: the Grafana dashboard parses and queries only metrics the code defines; Prometheus
scrapes every service of docker-compose.yml on the port it serves /metrics on. (A running
stack serving every dashboard metric: tests/integration/test_observability_stack.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from delivery.metrics import delivery_metrics
from plumbing.kafka.lag import LagCollector
from plumbing.metrics import REGISTRY, HttpMetrics
from plumbing.settings import Settings
from producers.observability import producer_metrics
from registry.metrics import store_gauges
from streams.metrics import router_metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/cpevents.json").read_text())
    return loaded


def _defined() -> set[str]:
    """Every cpevents_ metric name the components define (histograms with their series)."""
    delivery_metrics()
    router_metrics()
    producer_metrics()
    HttpMetrics("registry")
    store_gauges()
    names = {LagCollector.NAME, LagCollector.PARTITION_NAME}
    for collector in list(REGISTRY._collector_to_names):
        describe = getattr(collector, "describe", None)
        for family in describe() if describe is not None else ():
            names.add(family.name)
            if family.type == "counter":
                names.add(f"{family.name}_total")
            if family.type == "histogram":
                names.update({f"{family.name}_{s}" for s in ("bucket", "count", "sum")})
    return {n for n in names if n.startswith("cpevents_")}


def test_the_dashboard_queries_only_defined_metrics_of_the_provisioned_source() -> None:
    dashboard = _dashboard()
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        exprs.extend(target["expr"] for target in panel["targets"])
    used = {name for expr in exprs for name in re.findall(r"\bcpevents_[a-z0-9_]+", expr)}
    assert len(used) >= 15
    assert used - _defined() == set()
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("throughput", "latency", "lateness", "lag", "dead letters", "breakers"):
        assert topic in titles


def test_prometheus_scrapes_every_service_where_it_serves_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job["dns_sd_configs"][0]["names"][0], job["dns_sd_configs"][0]["port"])
        for job in config["scrape_configs"]
    }
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert targets == {
        "registry": ("registry", 8081),
        "gateway": ("gateway", 8080),
        "streams": ("streams", 6066),
        "delivery": ("delivery", Settings().delivery_web_port),
    }
    for name in ("registry", "gateway"):
        command = compose[name]["command"]
        assert command[command.index("--port") + 1] == str(targets[name][1])
    for name in ("streams", "delivery"):  # listening beyond loopback, for Prometheus
        command = compose[name]["command"]
        assert command[command.index("--web-host") + 1] == "0.0.0.0"
    mounts = " ".join(compose["prometheus"]["volumes"] + compose["grafana"]["volumes"])
    for path in ("deploy/prometheus/prometheus.yml", "deploy/grafana/provisioning"):
        assert f"./{path}:" in mounts
        assert (ROOT / path).exists()
