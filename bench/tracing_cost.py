"""CPU of tracing per span and per routed event (issue 16), in one process, robust to load.

    .venv/bin/python bench/tracing_cost.py [--spans 20000] [--rounds 5] [--profile FILE]

The spans are made by the code the services run: the delivery worker's ``POST webhook`` span
(``delivery.trace``: a lean span, child of the task's ``traceparent``, made for a batch of
records as the worker reads them, started and ended around the POST as ``Lanes._run`` does, its
own ``traceparent`` written into the endpoint's request, and finished for the batch with the
attempts' outputs) and the router's
``route`` span (``streams.trace.BatchTrace``: one per batch of 1000 events, each event in a
trace of its own, so the span keeps the SDK's limit of 128 links; tasks carry their event's
headers), with the real ``BatchSpanProcessor`` and our OTLP/HTTP exporter
(``plumbing.otlp_exporter``) configured by ``plumbing.tracing.configure`` from ``OTEL_*``
variables, posting to ``bench/otlp_sink.py`` in a process of its own. For the router,
``--spans`` counts events and the figures are per event.

What counts is ``time.process_time()``: the CPU of every thread of this process, so the
exporter thread's encoding and HTTP posts count, while what other processes do on the machine
does not. The attempt loop runs with the delivery worker's collector settings
(``delivery.gctune``), the route loop with the router's (CPython's defaults). Each figure is
(traced - untraced) / spans for the same loop, the untraced loop doing what the services do
with tracing off; the minimum over rounds (modes alternate) is reported.

Modes: ``otlp`` (the whole cost), ``drop`` (same processor, an exporter that drops: the span
made, its traceparent parsed and written, the span ended and queued). Breakdown: ``encode``
(OTLP protobuf encoding of the finished spans alone, as the exporter does it), ``http`` (otlp -
drop - encode: the exporter's POSTs, its thread's wake-ups).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the
# `delivery` package it measures.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import cProfile
import gc
import os
import pstats
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from delivery.gctune import steady_state_gc
from delivery.lanes import Job
from delivery.outcome import Outcome, Verdict
from delivery.trace import finish_attempt_spans, prepare_attempt_spans, start_attempt_span
from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.kafka.produce import Record
from plumbing.otlp_encoding import encode_spans
from schemas import ids
from schemas.webhook import Webhook
from streams.trace import BatchTrace
from tests.fixtures_delivery import make_job
from tests.fixtures_tracing import KeepSpans

CONTEXTS = 1000  # distinct incoming traceparents, used in turn
EXPORT_BATCH = 512  # the SDK's default OTEL_BSP_MAX_EXPORT_BATCH_SIZE
DELIVERED = AttemptResult(200, Outcome(Verdict.DELIVERED, "HTTP 200"), 3.0)
URL = "http://127.0.0.1:9/hook"
BODY = b'{"type":"deploy.finished","data":{}}'
SIGNED = {
    "webhook-id": "evt_01J0000000000000000000000",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "content-type": "application/json",
}


class DropExporter(SpanExporter):
    """Accepts every batch and does nothing: the cost of the spans without their export."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (no event loop: its cost is not the spans')."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


async def post(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
    return DELIVERED


def traceparents(ratio: float) -> list[bytes]:
    """Incoming contexts: random trace ids, sampled upstream as ``parentbased_traceidratio``
    at ``ratio`` decides (the same decision for the same trace id, as across our services)."""
    bound = TraceIdRatioBased.get_bound_for_rate(ratio)
    values = []
    for _ in range(CONTEXTS):
        trace_id, span_id = random.getrandbits(128) or 1, random.getrandbits(64) or 1
        sampled = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < bound
        values.append(f"00-{trace_id:032x}-{span_id:016x}-{int(sampled):02x}".encode())
    return values


TRACEPARENTS = traceparents(1.0)  # replaced by main() for --ratio


def jobs() -> list[Job]:
    """Delivery jobs as the worker's lanes hold them, one per incoming context."""
    webhook = Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="ten_1", url=URL)
    return [
        make_job(webhook, n, headers=[("traceparent", value), ("retry-attempt", b"0")])
        for n, value in enumerate(TRACEPARENTS)
    ]


def event_messages() -> list[Any]:
    """Consumed event records, as aiokafka gives them to the router: ``ROUTE_BATCH`` of them,
    each with a traceparent of its own (the worst case for links: no two share a context)."""
    return [
        SimpleNamespace(
            topic="ctrlplane.events.deploy",
            partition=1,
            offset=offset,
            headers=[("traceparent", TRACEPARENTS[offset % CONTEXTS])],
        )
        for offset in range(ROUTE_BATCH)
    ]


ROUTE_BATCH = 1000  # the router's raw batch size (streams.raw_batches)
TASKS = [SimpleNamespace(key=b"wh_01J0000000000000000000000", value=b"x" * 200)]
DELIVERIES = "ctrlplane.deliveries"


def attempts(n: int, traced: bool) -> None:
    with steady_state_gc():  # the delivery worker's collector settings
        _attempts(n, traced)


ATTEMPT_BATCH = 500  # records the delivery worker reads at a time (its _BATCH)


def _attempts(n: int, traced: bool) -> None:
    the_jobs = jobs()
    headers = SIGNED
    if traced:  # as DeliveryWorker._consume, Lanes._run and DeliveryWorker._settle_attempts do
        for first in range(0, n, ATTEMPT_BATCH):
            batch = [the_jobs[i % CONTEXTS] for i in range(first, min(first + ATTEMPT_BATCH, n))]
            for job, span in zip(
                batch, prepare_attempt_spans([j.message for j in batch]), strict=True
            ):
                job.span = span
            attempted = []
            for job in batch:
                request = dict(headers)
                span = start_attempt_span(job, request)
                result = run(post(URL, BODY, request))
                if span is not None:
                    span.end_time = time.time_ns()
                attempted.append((job, result))
            finish_attempt_spans(attempted)
    else:
        for i in range(n):
            job = the_jobs[i % CONTEXTS]
            run(post(URL, BODY, dict(headers)) if job is not None else post(URL, BODY, {}))


def routes(n: int, traced: bool) -> None:
    """``n`` events routed in batches of ``ROUTE_BATCH``, as ``RouterAgent._outputs`` does."""
    messages = event_messages()
    for first in range(0, n, ROUTE_BATCH):
        batch = messages[: min(ROUTE_BATCH, n - first)]
        if traced:
            trace = BatchTrace(batch)
            out = [
                Record(DELIVERIES, t.key, t.value, trace.headers(i))
                for i in range(len(batch))
                for t in TASKS
            ]
            trace.end(len(out), 0)
        else:
            [Record(DELIVERIES, t.key, t.value) for i in range(len(batch)) for t in TASKS]


Loop = Callable[[int, bool], None]
SCENARIOS: dict[str, Loop] = {"attempt": attempts, "route": routes}


def cpu(loop: Loop, n: int, traced: bool) -> float:
    """Process CPU seconds of ``loop``, exports of its spans included."""
    gc.collect()
    start = time.process_time()
    loop(n, traced)
    if traced and tracing._provider is not None:
        tracing._provider.force_flush()  # the exporter's remaining work counts
    return time.process_time() - start


def configure(mode: str, endpoint: str) -> None:
    if mode == "otlp":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        tracing.configure("bench", env=os.environ)
    else:
        tracing.configure("bench", exporter=DropExporter(), env={}, batch=True)


def per_span(mode: str, endpoint: str, loop: Loop, n: int, rounds: int) -> float:
    """Min over rounds of (traced - untraced) CPU per span, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        configure(mode, endpoint)
        traced = cpu(loop, n, True)
        tracing.shutdown()
        untraced = cpu(loop, n, False)
        best = min(best, (traced - untraced) / n * 1e6)
    return best


def micro(label: str, fn: Callable[[], Any], n: int, rounds: int) -> float:
    """Min over rounds of CPU per call of ``fn``, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def encode_cost(loop: Loop, n: int, rounds: int) -> float:
    """OTLP encoding of the spans ``loop`` makes, alone, per span made (microseconds)."""
    kept = KeepSpans()
    tracing.configure("bench", exporter=kept, env={})
    made = min(n, 5000)
    loop(made, True)
    tracing.shutdown()
    finished = kept.spans
    batches = [finished[i : i + EXPORT_BATCH] for i in range(0, len(finished), EXPORT_BATCH)]
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for batch in batches:
            encode_spans(batch)  # as plumbing.otlp_exporter does
        # Per span made: those not sampled are not exported.
        best = min(best, (time.process_time() - start) / made * 1e6)
    return best


def profile(loop: Loop, n: int, endpoint: str, path: str) -> None:
    configure("otlp", endpoint)
    profiler = cProfile.Profile()
    profiler.enable()
    loop(n, True)
    assert tracing._provider is not None
    tracing._provider.force_flush()
    profiler.disable()
    tracing.shutdown()
    profiler.dump_stats(path)
    pstats.Stats(path).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--profile", help="cProfile the otlp mode into this file (and print it)")
    parser.add_argument(
        "--ratio",
        type=float,
        default=1.0,
        help="OTEL_TRACES_SAMPLER=parentbased_traceidratio with this OTEL_TRACES_SAMPLER_ARG; "
        "incoming contexts sampled upstream at the same ratio (default 1: always on)",
    )
    args = parser.parse_args()
    TRACEPARENTS[:] = traceparents(args.ratio)
    sampled = sum(value.endswith(b"-01") for value in TRACEPARENTS) / CONTEXTS
    from bench.otlp_sink import OtlpSink

    chosen = SCENARIOS if args.scenario == "all" else {args.scenario: SCENARIOS[args.scenario]}
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        os.environ.pop(name, None)
    if args.ratio < 1:
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(args.ratio)
    # The loop makes spans far faster than a service does: a queue holding them all, so that
    # none is dropped (dropped spans would cost nothing to export and flatter the figures).
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(args.spans + EXPORT_BATCH))
    with OtlpSink() as sink:
        for scenario, loop in chosen.items():
            loop(2000, False)  # warm-up: imports, caches
            if args.profile:
                profile(loop, args.spans, sink.endpoint, f"{args.profile}.{scenario}")
                continue
            before = sink.spans()
            otlp = drop = float("inf")
            for _ in range(args.rounds):  # alternate the modes: load drifts
                otlp = min(otlp, per_span("otlp", sink.endpoint, loop, args.spans, 1))
                drop = min(drop, per_span("drop", sink.endpoint, loop, args.spans, 1))
            received = sink.spans() - before
            if loop is routes:  # one span per batch: figures per event, no per-span parts
                batches = -(-args.spans // ROUTE_BATCH) * args.rounds
                print(
                    f"{scenario:8} per event (µs CPU): total {otlp:6.2f} | without export "
                    f"{drop:6.2f} | exported {received}/{batches} spans"
                )
                continue
            encode = encode_cost(loop, args.spans, args.rounds)
            expected = round(args.spans * args.rounds * sampled)
            print(
                f"{scenario:8} per span (µs CPU): total {otlp:6.1f} | made, ended and queued "
                f"(with the traceparent parsed and written) {drop:5.1f}  encode {encode:5.1f}  "
                f"http {otlp - drop - encode:5.1f} | exported {received}/{expected}"
            )


if __name__ == "__main__":
    main()
