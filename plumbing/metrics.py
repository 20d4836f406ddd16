"""Prometheus metrics: one registry per process, its ``GET /metrics`` handler, and the helpers
every component defines its metrics with.

Conventions (checked when a metric is made): names start with ``cpevents_``, carry their unit
(``_seconds``, ``_bytes``, ``_records``…) and counters end in ``_total``. Labels are bounded
sets (an outcome, a status class, a route pattern, a topic): never an event, delivery or tenant
id. Per-webhook series exist only behind ``CPEVENTS_METRICS_PER_WEBHOOK``.

``CPEVENTS_METRICS_ENABLED=false`` turns counting off: counters, gauges and histograms become
no-ops (``GET /metrics`` still answers, with the process metrics and the gauges read at scrape
time). It exists to measure what metrics cost (``bench/router.py``, ``bench/delivery.py``
``--observability``) and for an operator who scrapes nothing.

Hot paths stay cheap: callers bind labelled children once (``metric.labels(...)``, kept), count
once per batch where the code already batches, and gauges of live state (queues, breakers,
requests in flight) are read at scrape time by a :class:`ScrapeGauge` rather than updated on
every change.

A process may hold several instances of a component (tests do): metrics are made once per
process (``counter``/``gauge``/``histogram`` return the existing one for a name) and a
:class:`ScrapeGauge` sums over every live instance that registered with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import gc_collector as _gc
from prometheus_client import platform_collector as _platform
from prometheus_client import process_collector as _process
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import TypeAdapter

from plumbing.http_server import ServerLimits, start_server

__all__ = [
    "LATENCY_BUCKETS",
    "REGISTRY",
    "SLOW_BUCKETS",
    "HttpMetrics",
    "ScrapeGauge",
    "counter",
    "gauge",
    "histogram",
    "metrics_enabled",
    "metrics_handler",
    "register_collector",
    "scrape",
    "serve_metrics",
    "status_class",
]

#: The process's registry: every ``cpevents_`` metric, and the process, platform and GC ones.
REGISTRY = CollectorRegistry(auto_describe=True)
_process.ProcessCollector(registry=REGISTRY)
_platform.PlatformCollector(registry=REGISTRY)
_gc.GCCollector(registry=REGISTRY)

#: Request and batch durations: 1 ms to 30 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: End-to-end times that include the retry ladder: 10 ms to a day (the ladder reaches 10 h).
SLOW_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0, 7200.0, 18000.0, 36000.0, 86400.0,
)  # fmt: skip

_NAME = re.compile(r"^cpevents_[a-z0-9_]+$")
_UNITS = ("_seconds", "_bytes", "_records", "_ratio", "_info")
_made: dict[str, Any] = {}
_lock = threading.Lock()
M = TypeVar("M")
log = logging.getLogger(__name__)
#: Settings.metrics_enabled's variable, read here because metrics are made at import time,
#: before any Settings object exists.
ENABLED_VARIABLE = "CPEVENTS_METRICS_ENABLED"


class _NoMetric:
    """What counter/gauge/histogram return with metrics off: every call does nothing."""

    def labels(self, *_values: str, **_named: str) -> _NoMetric:
        return self

    def inc(self, _amount: float = 1) -> None:
        pass

    def dec(self, _amount: float = 1) -> None:
        pass

    def set(self, _value: float) -> None:
        pass

    def observe(self, _value: float) -> None:
        pass


_NO_METRIC = _NoMetric()
_enabled: bool | None = None


def metrics_enabled() -> bool:
    """``CPEVENTS_METRICS_ENABLED`` (default true), read once per process, parsed as Settings
    parses a bool (a bad value is an error naming the variable)."""
    global _enabled
    if _enabled is None:
        raw = os.environ.get(ENABLED_VARIABLE, "true")
        try:
            _enabled = TypeAdapter(bool).validate_python(raw)
        except ValueError:
            raise ValueError(f"{ENABLED_VARIABLE}={raw!r}: expected true or false") from None
        if not _enabled:
            log.info(
                "metrics are off (%s=false): counters and histograms count nothing",
                ENABLED_VARIABLE,
            )
    return _enabled


def _check(name: str, kind: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"metric {name!r}: names are cpevents_[a-z0-9_]+")
    if kind == "counter" and not name.endswith("_total"):
        raise ValueError(f"counter {name!r}: counter names end in _total")
    if kind == "histogram" and not name.endswith(("_seconds", "_bytes")):
        raise ValueError(f"histogram {name!r}: name its unit (_seconds, _bytes)")


def _once(name: str, kind: str, make: Callable[[], M]) -> M:
    """The metric ``name``, made (and registered) on first use only."""
    _check(name, kind)
    if not metrics_enabled():
        return cast(M, _NO_METRIC)
    with _lock:
        made = _made.get(name)
        if made is None:
            made = _made[name] = make()
        return made


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """The process's counter ``name`` (made on first use)."""
    return _once(name, "counter", lambda: Counter(name, documentation, labels, registry=REGISTRY))


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    """The process's gauge ``name`` (made on first use)."""
    return _once(name, "gauge", lambda: Gauge(name, documentation, labels, registry=REGISTRY))


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    """The process's histogram ``name`` (made on first use)."""
    return _once(
        name,
        "histogram",
        lambda: Histogram(name, documentation, labels, registry=REGISTRY, buckets=buckets),
    )


def register_collector(name: str, make: Callable[[], Collector]) -> Collector:
    """Register the custom collector ``make()`` under ``name`` once per process."""

    def made() -> Collector:
        collector = make()
        REGISTRY.register(collector)
        return collector

    with _lock:
        found = _made.get(name)
        if found is None:
            found = _made[name] = made()
        return found


def status_class(status: int) -> str:
    """``2xx``… ``5xx`` for an HTTP status; ``none`` when there was no response (0)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


# -- gauges read at scrape time ---------------------------------------------------------------

Reading = float | Mapping[tuple[str, ...], float]


class ScrapeGauge(Collector):
    """A gauge whose value is read from live objects when Prometheus scrapes.

    Each owner registers a reader (``add(owner, read)``); ``read(owner)`` returns a number, or
    for a labelled gauge a mapping of label values to numbers. Values of every live owner are
    summed (``max`` with ``combine="max"``: an age). Owners are held weakly: a stopped worker's
    values disappear with it. Nothing is done between scrapes.
    """

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str] = (), combine: str = "sum"
    ) -> None:
        _check(name, "gauge")
        self.name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._max = combine == "max"
        self._readers: list[tuple[weakref.ref[Any], Callable[[Any], Reading]]] = []
        self._guard = threading.Lock()

    @classmethod
    def make(
        cls, name: str, documentation: str, labels: Sequence[str] = (), combine: str = "sum"
    ) -> ScrapeGauge:
        """The process's scrape gauge ``name`` (made and registered on first use)."""
        made = register_collector(name, lambda: cls(name, documentation, labels, combine))
        assert isinstance(made, ScrapeGauge)
        return made

    def add(self, owner: object, read: Callable[[Any], Reading]) -> None:
        """Read ``read(owner)`` at every scrape while ``owner`` lives."""
        with self._guard:
            self._readers = [(ref, fn) for ref, fn in self._readers if ref() is not None]
            self._readers.append((weakref.ref(owner), read))

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self._documentation, labels=self._labels)]

    def collect(self) -> Iterable[Metric]:
        values: dict[tuple[str, ...], float] = {}
        with self._guard:
            readers = list(self._readers)
        for ref, read in readers:
            owner = ref()
            if owner is None:
                continue
            reading = read(owner)
            items = reading.items() if isinstance(reading, Mapping) else [((), reading)]
            for key, value in items:
                old = values.get(key)
                if old is None:
                    values[key] = float(value)
                else:
                    values[key] = max(old, value) if self._max else old + value
        family = GaugeMetricFamily(self.name, self._documentation, labels=self._labels)
        if not self._labels:
            family.add_metric([], values.get((), 0.0))
        for key, value in values.items():
            if self._labels and key:
                family.add_metric(list(key), value)
        return [family]


# -- serving ------------------------------------------------------------------------------------


def scrape() -> bytes:
    """The registry in Prometheus' text format (collects: may call Kafka for the lag)."""
    return bytes(generate_latest(REGISTRY))


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics`` for any aiohttp application: the text format, collected off the loop
    (a lag collector waits on Kafka)."""
    body = await asyncio.to_thread(scrape)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMetrics:
    """Request durations of one aiohttp service by route pattern, method and status, as an
    aiohttp middleware that also answers ``GET /metrics`` itself (before any authentication
    middleware after it: Prometheus scrapes without credentials; nothing served is secret).

    The route label is the matched resource's pattern (``/v1/webhooks/{id}``), or
    ``unmatched``: bounded whatever the clients send.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._durations = histogram(
            "cpevents_http_request_duration_seconds",
            "Time to answer an HTTP request, by service, route pattern, method and status",
            ("service", "route", "method", "status"),
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def child(self, route: str, method: str, status: int) -> Any:
        """The histogram child of a (route, method, status), bound once."""
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self._durations.labels(
                self._service, route, method, str(status)
            )
        return found

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Time the request; answer ``GET /metrics``."""
        if request.path == "/metrics" and request.method == "GET":
            return await metrics_handler(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else ""
            self.child(route or "unmatched", request.method, status).observe(
                time.perf_counter() - started
            )


async def serve_metrics(
    host: str, port: int, healthy: Callable[[], bool] | None = None
) -> tuple[web.AppRunner, int]:
    """A tiny web server for a process without one (the delivery worker): ``GET /metrics``
    and ``GET /healthz`` (200 while ``healthy()``, else 503). Returns the runner (``cleanup()``
    stops it) and the bound port (``port`` 0 picks a free one)."""

    async def health(_request: web.Request) -> web.Response:
        ok = healthy() if healthy is not None else True
        return web.json_response({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health)
    runner, site = await start_server(app, host, port, ServerLimits(max_connections=64))
    return runner, site.port


def sample_values(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """The samples of ``name`` in a text-format scrape, as (labels, value): for tests and
    ``cpevents status``-like readers that have a scrape in hand."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield dict(sample.labels), float(sample.value)
