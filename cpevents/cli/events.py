"""``cpevents produce`` and ``cpevents keygen``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from producers.publisher import EventPublisher
from schemas.errors import ContractError
from schemas.event import Event
from schemas.samples import sample_events
from schemas.secrets import generate_encryption_key


@app.command()
def produce(
    event_type: Annotated[str | None, typer.Option("--type", help="e.g. instance.created")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant id")] = "ten_demo",
    instance: Annotated[str | None, typer.Option(help="Instance id (inst_…)")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor id")] = None,
    payload: Annotated[str, typer.Option(help="Payload as a JSON object")] = "{}",
    samples: Annotated[bool, typer.Option(help="Publish one sample event per subsystem")] = False,
) -> None:
    """Publish an event (or the samples) to its subsystem topic."""
    settings = load_settings()
    try:
        if samples:
            events = sample_events(tenant)
        elif event_type is None:
            raise ContractError("type", "is required unless --samples is given")
        else:
            event = Event.new(event_type, tenant).with_payload(json.loads(payload))
            event = event.with_instance(instance) if instance else event
            events = [event.with_actor(actor) if actor else event]
    except (ContractError, ValueError) as exc:
        err_console.print(f"[red]invalid event:[/red] {exc}")
        raise typer.Exit(2) from None
    publisher = EventPublisher(settings)
    publisher.publish(events)
    table = Table("id", "type", "topic")
    for event in events:
        table.add_row(event.id, str(event.type), settings.topics.for_event_type(event.type))
    console.print(table)


@app.command()
def keygen() -> None:
    """Print a new key for CPEVENTS_SECRET_KEY (encrypts webhook secrets at rest)."""
    console.print(generate_encryption_key())
