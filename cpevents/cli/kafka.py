"""``cpevents kafka start|stop|status`` and ``cpevents topics create``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from plumbing.kafka.clients import bootstrap
from plumbing.kafka.topic_admin import ensure_topics

# The local broker (cpevents.localkafka) is dev-only tooling: each command imports it when run,
# so that loading the CLI for a production worker never does.
kafka_app = typer.Typer(help="Run the local Kafka broker (KRaft, from Maven Central jars).")
topics_app = typer.Typer(help="Manage the catalog's topics.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")


# The choices of LocalBroker.security, spelt here so that the CLI never imports the local broker
# module (dev-only tooling) just to build its help.
SecurityOption = Annotated[
    Literal["plaintext", "sasl_ssl"],
    typer.Option(
        "--security",
        help="plaintext, or sasl_ssl: clients must use TLS (a CA made for the broker) and "
        "SCRAM-SHA-512; their settings are written to a 0600 env file",
    ),
]


@kafka_app.command("start")
def kafka_start(security: SecurityOption = "plaintext") -> None:
    """Start the local broker in the background (first run downloads Kafka with Maven)."""
    from cpevents.localkafka.broker import BrokerError, default_broker

    settings = load_settings()
    if settings.bootstrap_servers:
        err_console.print(
            f"CPEVENTS_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}); nothing to start."
        )
        raise typer.Exit(1)
    broker = default_broker(settings, security)
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
    if security != "plaintext":
        # The file holds the SCRAM password: point at it, never print it.
        console.print(
            f"{security.upper()} only; client settings (with the password) are in "
            f"{broker.client_env_file}:\n  set -a; . {broker.client_env_file}; set +a"
        )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker started by `cpevents kafka start` (whatever its --security)."""
    from cpevents.localkafka.broker import SECURITY_MODES, default_broker

    settings = load_settings()
    stopped = [mode for mode in SECURITY_MODES if default_broker(settings, mode).stop()]
    console.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Report whether a broker answers at the configured address, with the configured security
    (exit 1 if not)."""
    from cpevents.localkafka.broker import SECURITY_MODES, default_broker, is_ready

    settings = load_settings()
    address = bootstrap(settings)
    pids = [default_broker(settings, mode).running_pid() for mode in SECURITY_MODES]
    pid = None if settings.bootstrap_servers else next((p for p in pids if p), None)
    if is_ready(settings):
        suffix = f" (local broker, pid {pid})" if pid else ""
        console.print(f"Kafka is running at {address}{suffix}")
        return
    console.print(f"Kafka is not reachable at {address}")
    raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the catalog that does not exist yet (safe to rerun)."""
    settings = load_settings(check_kafka=True)
    for result in ensure_topics(settings):
        console.print(f"{'created' if result.created else 'exists '}  {result.name}")
