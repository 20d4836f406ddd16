"""The spans of each hop, with the SDK's in-memory exporter: the gateway's request span and
KafkaBus's publish span put their context into every record, the router's route span (one per
batch, linked to its events' contexts) passes each record's context on to its tasks, and each
delivery attempt's span puts its own into the endpoint's request."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from delivery.outcome import Outcome, Verdict
from delivery.trace import end_attempt_span, prepare_attempt_spans, start_attempt_span
from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.kafka.produce import Delivered, Record
from producers.observability import traced_publish, traced_request
from schemas import ids
from schemas.webhook import Webhook
from streams.trace import BatchTrace
from tests.fixtures_delivery import make_job

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01"
WEBHOOK = Webhook(id=ids.new_id(ids.WEBHOOK), tenant_id="ten_test", url="https://hooks.example/in")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("test", exporter=exporter, env={})
    try:
        yield exporter
    finally:
        tracing.shutdown()


def trace_of(headers: Sequence[tuple[str, Any]]) -> str:
    value = dict(headers)["traceparent"]
    return str(value.decode() if isinstance(value, bytes) else value).split("-")[1]


class FakeSend:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> list[Delivered]:
        self.sent.extend(records)
        return [Delivered(r.topic, 0, i) for i, r in enumerate(records)]


async def test_the_gateway_continues_the_callers_trace_into_every_record(
    spans: InMemorySpanExporter,
) -> None:
    send = FakeSend()
    records = [Record("t.events.deploy", b"ten", b"v1"), Record("t.events.deploy", b"ten", b"v2")]
    await traced_request(send, records, {"traceparent": CALLER}, ["evt_1", "evt_2"])
    [span] = spans.get_finished_spans()
    assert span.name == "POST /v1/events" and span.kind == trace.SpanKind.SERVER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert [trace_of(r.headers) for r in send.sent] == [TRACE, TRACE]
    assert all(f"{span.context.span_id:016x}" in str(r.headers) for r in send.sent)


async def test_a_failed_send_ends_the_span_as_an_error(spans: InMemorySpanExporter) -> None:
    async def failing(records: Sequence[Record]) -> list[Delivered]:
        raise RuntimeError("kafka down")

    with pytest.raises(RuntimeError):
        await traced_request(failing, [Record("t", b"k", b"v")], {}, ["evt_1"])
    [span] = spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.parent is None  # no traceparent: a new trace


async def test_kafkabus_publish_is_a_child_of_the_callers_current_span(
    spans: InMemorySpanExporter,
) -> None:
    send = FakeSend()
    tracer = trace.get_tracer("caller", tracer_provider=tracing._provider)
    with tracer.start_as_current_span("handler") as caller:
        await traced_publish(send, [Record("t.events.instance", b"ten", b"v")])
    publish = next(s for s in spans.get_finished_spans() if s.name.startswith("publish"))
    assert publish.kind == trace.SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == caller.get_span_context().span_id
    assert trace_of(send.sent[0].headers) == f"{caller.get_span_context().trace_id:032x}"


def test_the_router_makes_one_span_per_batch_and_tasks_keep_their_events_trace(
    spans: InMemorySpanExporter,
) -> None:
    other = f"00-{'ab' * 16}-{'cd' * 8}-01"
    messages = [
        SimpleNamespace(headers=[("traceparent", CALLER.encode()), ("tracestate", b"k=v")]),
        SimpleNamespace(headers=[("traceparent", CALLER.encode()), ("tracestate", b"k=v")]),
        SimpleNamespace(headers=[("event-type", b"x"), ("traceparent", other.encode())]),
        SimpleNamespace(headers=None),  # no context: its tasks take the batch span's
        SimpleNamespace(headers={"traceparent": "00-junk"}),  # invalid: no link, passed on
    ]
    batch = BatchTrace(messages)
    assert batch.headers(0) == (("traceparent", CALLER.encode()), ("tracestate", b"k=v"))
    assert batch.headers(2) == (("traceparent", other.encode()),)
    own = batch.headers(3)
    assert batch.headers(4) == (("traceparent", b"00-junk"),)
    batch.end(tasks=7, dead_lettered=1)
    [span] = spans.get_finished_spans()
    assert span.name == "route" and span.kind == trace.SpanKind.CONSUMER
    assert span.parent is None  # a trace of its own
    assert trace_of(own) == f"{span.context.trace_id:032x}"
    # One link per distinct event context, with its tracestate.
    linked = [(link.context.trace_id, link.context.span_id) for link in span.links]
    assert linked == [
        (int(TRACE, 16), 0x00F067AA0BA902B7),
        (int("ab" * 16, 16), 0xCDCDCDCDCDCDCDCD),
    ]
    assert span.links[0].context.trace_state.get("k") == "v"
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 5
    assert (span.attributes["cpevents.tasks"], span.attributes["cpevents.dead_lettered"]) == (7, 1)


def test_a_batch_span_links_at_most_the_sdks_link_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "3")
    exporter = InMemorySpanExporter()
    tracing.configure("test", exporter=exporter, env={})
    try:
        contexts = [f"00-{TRACE}-{i + 1:016x}-01".encode() for i in range(10)]
        batch = BatchTrace([SimpleNamespace(headers=[("traceparent", c)]) for c in contexts])
        assert [batch.headers(i) for i in range(10)] == [(("traceparent", c),) for c in contexts]
        batch.end(10, 0)
        [span] = exporter.get_finished_spans()
        assert [link.context.span_id for link in span.links] == [1, 2, 3]
    finally:
        tracing.shutdown()


def test_each_attempt_is_a_span_whose_traceparent_the_endpoint_gets(
    spans: InMemorySpanExporter,
) -> None:
    job = make_job(WEBHOOK, 1, headers=[("traceparent", CALLER.encode()), ("retry-attempt", b"2")])
    job.webhook = None
    assert job.task is not None
    headers = {"webhook-id": "evt_1"}
    started = start_attempt_span(job, headers)  # as Lanes._run does, around its POST
    assert started is not None
    end_attempt_span(started, job, AttemptResult(503, Outcome(Verdict.RETRY, "HTTP 503"), 12.0))
    assert headers["webhook-id"] == "evt_1"
    assert headers["traceparent"].split("-")[1] == TRACE
    [span] = spans.get_finished_spans()
    assert span.kind == trace.SpanKind.CLIENT
    assert headers["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.status.description == "retry: HTTP 503"  # the verdict, and why
    assert span.attributes == {
        "cpevents.attempt": 1,
        "cpevents.delivery_id": job.task.id,
        "cpevents.event_id": job.task.event.id,
        "http.response.status_code": 503,
    }


def test_an_attempt_without_an_answer_has_no_status_code(
    spans: InMemorySpanExporter,
) -> None:
    job = make_job(WEBHOOK, 1)  # no headers, so no trace context: the span is a root
    job.task = None
    started = start_attempt_span(job, {})
    assert started is not None
    end_attempt_span(
        started, job, AttemptResult(0, Outcome(Verdict.RETRY, "connection refused"), 1.0)
    )
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.attributes == {"cpevents.attempt": 1, "cpevents.webhook_id": WEBHOOK.id}
    assert span.status.description == "retry: connection refused"


def test_spans_made_as_records_are_read_start_with_their_attempts(
    spans: InMemorySpanExporter,
) -> None:
    records = [
        Message(topic="t.deliveries", headers=[("traceparent", CALLER.encode())]),
        Message(topic="t.deliveries"),  # no context: a root
    ]
    made = prepare_attempt_spans(records)
    assert all(span is not None for span in made)
    assert not spans.get_finished_spans(), "made, not sent"
    job = make_job(WEBHOOK, 1, headers=[("traceparent", CALLER.encode())])
    job.span = made[0]
    before = time.time_ns()
    headers: dict[str, str] = {}
    assert start_attempt_span(job, headers) is made[0]  # the same span, started now
    assert made[0] is not None and made[0].start_time >= before
    assert headers["traceparent"] == made[0].traceparent
    end_attempt_span(made[0], job, AttemptResult(200, Outcome(Verdict.DELIVERED, "HTTP 200"), 1.0))
    assert job.span is None
    [span] = spans.get_finished_spans()
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.context.trace_id == int(TRACE, 16) and span.start_time >= before
    assert made[1] is not None and made[1].parent_span_id == 0


def test_no_spans_are_made_when_tracing_is_off() -> None:
    assert prepare_attempt_spans([Message(topic="t"), Message(topic="t")]) == [None, None]
    job = make_job(WEBHOOK, 1, headers=[("traceparent", CALLER.encode())])
    headers: dict[str, str] = {}
    assert start_attempt_span(job, headers) is None and not headers
