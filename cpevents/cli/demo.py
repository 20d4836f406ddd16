"""``cpevents demo``: the pipeline on the embedded default, start to finish, then exit."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import console, load_settings
from cpevents.kafka.clients import consumer_config
from cpevents.kafka.resolve import kafka_cluster
from cpevents.kafka.topics import ensure_topics
from producers.publisher import EventPublisher
from schemas.samples import sample_events
from schemas.serde import Serde


@app.command()
def demo() -> None:
    """Start a throwaway Kafka (unless CPEVENTS_BOOTSTRAP_SERVERS is set), publish one event per
    subsystem as Avro, read them back from Kafka and show them."""
    base = load_settings()
    started = time.monotonic()
    console.print("starting Kafka (first run downloads it with Maven)…")
    with kafka_cluster(base) as servers:
        console.print(f"Kafka ready at {servers} after {time.monotonic() - started:.1f}s")
        # The embedded registry arrives with the registry issue; until then the demo uses
        # confluent-kafka's in-process mock registry.
        settings = base.model_copy(
            update={"bootstrap_servers": servers, "schema_registry_url": "mock://demo"}
        )
        ensure_topics(settings)
        serde = Serde(settings.schema_registry_url)
        events = EventPublisher(settings, serde).publish(sample_events())
        console.print(f"published {len(events)} events (acks=all)")

        consumer = Consumer(consumer_config(settings, f"demo-{uuid.uuid4().hex}"))
        consumer.subscribe(settings.topics.all_events)
        table = Table("topic", "partition@offset", "type", "tenant", "payload", title="read back")
        seen = 0
        deadline = time.monotonic() + 30
        try:
            while seen < len(events) and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                topic = message.topic() or ""
                event = serde.events.decode(message.value(), topic)
                table.add_row(
                    message.topic(),
                    f"{message.partition()}@{message.offset()}",
                    str(event.type),
                    event.tenant_id,
                    str(event.payload),
                )
                seen += 1
        finally:
            consumer.close()
        console.print(table)
        if seen != len(events):
            console.print(f"[red]only {seen} of {len(events)} events came back[/red]")
            raise SystemExit(1)
    console.print("[green]demo complete[/green]; Kafka stopped")
