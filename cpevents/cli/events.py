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
from schemas.secrets import generate_encryption_key, rotated_key_list


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
def keygen(
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Print a key list for a rotation: a fresh key first, then the keys of the "
            "current CPEVENTS_SECRET_KEY",
        ),
    ] = False,
) -> None:
    """Print a new key for CPEVENTS_SECRET_KEY (encrypts webhook secrets at rest).

    With --rotate: the new CPEVENTS_SECRET_KEY value for a key rotation (the first key
    encrypts, all decrypt). Set it on every process, let writes re-encrypt, then drop the old
    keys (see the README).
    """
    if not rotate:
        typer.echo(generate_encryption_key())
        return
    current = load_settings().secret_key
    if current is None:
        err_console.print("[yellow]CPEVENTS_SECRET_KEY is not set: printing a single new key[/]")
    # Plain output (no wrapping or markup): the line is meant to be copied as it is.
    typer.echo(rotated_key_list(current.get_secret_value() if current else None))
