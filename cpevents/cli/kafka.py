"""``cpevents kafka start|stop|status`` and ``cpevents topics create``."""

from __future__ import annotations

import typer

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from cpevents.localkafka.broker import BrokerError, default_broker, is_ready
from plumbing.kafka.clients import bootstrap
from plumbing.kafka.topic_admin import ensure_topics

kafka_app = typer.Typer(help="Run the local Kafka broker (KRaft, from Maven Central jars).")
topics_app = typer.Typer(help="Manage the catalog's topics.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the local broker in the background (first run downloads Kafka with Maven)."""
    settings = load_settings()
    if settings.bootstrap_servers:
        err_console.print(
            f"CPEVENTS_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}); nothing to start."
        )
        raise typer.Exit(1)
    broker = default_broker(settings)
    try:
        with console.status("starting Kafka…"):
            broker.start()
    except BrokerError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"Kafka {settings.kafka_version} running on {broker.bootstrap_servers} "
        f"(pid {broker.running_pid()}, data in {broker.data_dir})"
    )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker started by `cpevents kafka start`."""
    broker = default_broker(load_settings())
    if broker.stop():
        console.print("Kafka stopped")
    else:
        console.print("Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Report whether a broker answers at the configured address (exit 1 if not)."""
    settings = load_settings()
    address = bootstrap(settings)
    pid = None if settings.bootstrap_servers else default_broker(settings).running_pid()
    if is_ready(address):
        suffix = f" (local broker, pid {pid})" if pid else ""
        console.print(f"Kafka is running at {address}{suffix}")
        return
    console.print(f"Kafka is not reachable at {address}")
    raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the catalog that does not exist yet (safe to rerun)."""
    settings = load_settings()
    for result in ensure_topics(settings):
        console.print(f"{'created' if result.created else 'exists '}  {result.name}")
