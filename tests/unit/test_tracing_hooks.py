"""The spans of each hop, with the SDK's in-memory exporter: the gateway's request span and
KafkaBus's publish span put their context into every record, the router's route span (one per
event) into each of its tasks, and each delivery attempt's span into the endpoint's request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from delivery.outcome import Outcome, Verdict
from delivery.retry_headers import FRESH
from delivery.trace import traced_post
from delivery.transport import AttemptResult
from plumbing import tracing
from plumbing.kafka.produce import Delivered, Record
from producers.observability import traced_publish, traced_request
from streams.metrics import traced_tasks

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01"


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


def test_the_router_makes_one_span_per_event_and_passes_it_to_each_task(
    spans: InMemorySpanExporter,
) -> None:
    message = SimpleNamespace(
        topic="t.events.deploy", partition=1, offset=7, headers=[("traceparent", CALLER.encode())]
    )
    tasks = [SimpleNamespace(key=b"wh_1", value=b"a"), SimpleNamespace(key=b"wh_2", value=b"b")]
    records = traced_tasks(message, tasks, "t.deliveries")
    [span] = spans.get_finished_spans()
    assert span.name == "route" and span.kind == trace.SpanKind.CONSUMER
    assert [r.topic for r in records] == ["t.deliveries", "t.deliveries"]
    assert [trace_of(r.headers) for r in records] == [TRACE, TRACE]
    assert span.attributes is not None and span.attributes["cpevents.tasks"] == 2
    dict_headers = SimpleNamespace(topic="t", partition=0, offset=0, headers={})
    traced_tasks(dict_headers, [], "t.deliveries")  # no context: a root span, no failure


async def test_each_attempt_is_a_span_whose_traceparent_the_endpoint_gets(
    spans: InMemorySpanExporter,
) -> None:
    class Message:
        def headers(self) -> list[tuple[str, bytes]]:
            return [("traceparent", CALLER.encode()), ("retry-attempt", b"2")]

    received: list[Mapping[str, str]] = []

    async def post(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        received.append(headers)
        return AttemptResult(503, Outcome(Verdict.RETRY, "HTTP 503"), 12.0)

    task = SimpleNamespace(id="deli_1", event=SimpleNamespace(id="evt_1"))
    job: Any = SimpleNamespace(message=Message(), task=task, webhook=None, state=FRESH)
    result = await traced_post(post, job, "http://x/hook", b"{}", {"webhook-id": "evt_1"})
    assert result.status == 503
    [headers] = received
    assert headers["webhook-id"] == "evt_1"
    assert headers["traceparent"].split("-")[1] == TRACE
    [span] = spans.get_finished_spans()
    assert span.kind == trace.SpanKind.CLIENT
    assert headers["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.status.description == "retry: HTTP 503"  # the verdict, and why
    assert span.attributes == {
        "cpevents.attempt": 1,
        "cpevents.delivery_id": "deli_1",
        "cpevents.event_id": "evt_1",
        "http.response.status_code": 503,
    }


async def test_an_attempt_without_an_answer_has_no_status_code(
    spans: InMemorySpanExporter,
) -> None:
    class Message:
        def headers(self) -> None:
            return None  # no trace context: the attempt's span is a root

    async def post(url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        return AttemptResult(0, Outcome(Verdict.RETRY, "connection refused"), 1.0)

    webhook = SimpleNamespace(id="wh_1")
    job: Any = SimpleNamespace(message=Message(), task=None, webhook=webhook, state=FRESH)
    await traced_post(post, job, "http://x/hook", b"{}", {})
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.attributes == {"cpevents.attempt": 1, "cpevents.webhook_id": "wh_1"}
    assert span.status.description == "retry: connection refused"
