"""plumbing.metrics: naming rules, one metric per name per process, scrape-time gauges, and
the /metrics handler and HTTP middleware on a real aiohttp server."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from plumbing.http_server import ServerLimits, start_server
from plumbing.metrics import (
    HttpMetrics,
    ScrapeGauge,
    counter,
    histogram,
    sample_values,
    scrape,
    serve_metrics,
    status_class,
)


def test_names_carry_the_prefix_and_their_unit() -> None:
    with pytest.raises(ValueError, match="cpevents_"):
        counter("requests_total", "x")
    with pytest.raises(ValueError, match="_total"):
        counter("cpevents_requests", "x")
    with pytest.raises(ValueError, match="unit"):
        histogram("cpevents_latency", "x")


def test_a_metric_is_made_once_per_process() -> None:
    first = counter("cpevents_test_once_total", "x", ("kind",))
    assert counter("cpevents_test_once_total", "x", ("kind",)) is first
    first.labels("a").inc(2)
    assert ({"kind": "a"}, 2.0) in list(
        sample_values(scrape().decode(), "cpevents_test_once_total")
    )


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 204, 404, 503, 0)] == [
        "2xx",
        "2xx",
        "4xx",
        "5xx",
        "none",
    ]


class Owner:
    def __init__(self, value: float) -> None:
        self.value = value


def test_scrape_gauges_sum_live_owners_and_forget_dead_ones() -> None:
    gauge = ScrapeGauge.make("cpevents_test_queued_records", "x")
    one, two = Owner(3), Owner(4)
    gauge.add(one, lambda o: o.value)
    gauge.add(two, lambda o: o.value)
    assert [s.value for s in next(iter(gauge.collect())).samples] == [7]
    del two
    gc.collect()
    assert [s.value for s in next(iter(gauge.collect())).samples] == [3]


def test_labelled_scrape_gauges_can_take_the_max() -> None:
    gauge = ScrapeGauge.make("cpevents_test_age_seconds", "x", ("lane",), combine="max")
    a, b = Owner(1), Owner(5)
    gauge.add(a, lambda o: {("x",): o.value})
    gauge.add(b, lambda o: {("x",): o.value, ("y",): 2.0})
    samples = {s.labels["lane"]: s.value for s in next(iter(gauge.collect())).samples}
    assert samples == {"x": 5, "y": 2}


async def test_the_middleware_times_routes_by_pattern_and_serves_metrics() -> None:
    metrics = HttpMetrics("testsvc")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application(middlewares=[metrics.middleware])
    app.router.add_get("/things/{id}", hello)
    runner, site = await start_server(app, "127.0.0.1", 0, ServerLimits())
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/things/1", "/things/2", "/nothing"):
                async with http.get(f"http://127.0.0.1:{site.port}{path}") as response:
                    await response.read()
            async with http.get(f"http://127.0.0.1:{site.port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
    finally:
        await runner.cleanup()
    counts = {
        (labels["route"], labels["status"]): value
        for labels, value in sample_values(text, "cpevents_http_request_duration_seconds_count")
        if labels["service"] == "testsvc"
    }
    assert counts == {("/things/{id}", "200"): 2, ("unmatched", "404"): 1}


async def test_the_standalone_server_serves_metrics_and_health() -> None:
    healthy = [True]
    runner, port = await serve_metrics("127.0.0.1", 0, lambda: healthy[0])
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            healthy[0] = False
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "process_cpu_seconds_total" in await response.text()
    finally:
        await runner.cleanup()


_SWITCH_PROBE = """
from plumbing.metrics import counter, histogram, scrape
hits = counter("cpevents_test_switch_total", "x", ("kind",))
hits.labels("a").inc(3)
histogram("cpevents_test_switch_seconds", "x").observe(0.5)
print(scrape().decode())
"""


@pytest.mark.parametrize(("value", "counted"), [("false", False), ("0", False), ("true", True)])
def test_metrics_enabled_false_makes_metrics_no_ops(value: str, counted: bool) -> None:
    # A fresh interpreter: the switch is read once per process, when the first metric is made.
    env = {**os.environ, "CPEVENTS_METRICS_ENABLED": value}
    done = subprocess.run(
        [sys.executable, "-c", _SWITCH_PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert ("cpevents_test_switch_total" in done.stdout) is counted
    assert ("cpevents_test_switch_seconds" in done.stdout) is counted
    assert "process_cpu_seconds_total" in done.stdout  # /metrics still serves the process's


def test_a_bad_metrics_enabled_value_names_the_variable() -> None:
    env = {**os.environ, "CPEVENTS_METRICS_ENABLED": "maybe"}
    done = subprocess.run(
        [sys.executable, "-c", _SWITCH_PROBE], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "CPEVENTS_METRICS_ENABLED='maybe'" in done.stderr
