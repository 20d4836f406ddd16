"""``cpevents worker streams``: the Faust router (and users' processors) in one worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cpevents.cli import worker_app
from cpevents.cli.common import configure_tracing, err_console, load_settings


@worker_app.command("streams")
def worker_streams(
    web_port: Annotated[
        int, typer.Option(envvar="CPEVENTS_STREAMS_WEB_PORT", help="Faust web server port")
    ] = 6066,
    web_host: Annotated[str, typer.Option(envvar="CPEVENTS_STREAMS_WEB_HOST")] = "127.0.0.1",
    processor: Annotated[
        list[str] | None,
        typer.Option(
            envvar="CPEVENTS_STREAMS_PROCESSORS",
            help="Module with install(ctx) adding your agents, e.g. streams.processors.counts",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Events routed per batch at most")] = 1000,
    session_timeout: Annotated[
        float,
        typer.Option(
            envvar="CPEVENTS_STREAMS_SESSION_TIMEOUT",
            help="Seconds before a silent worker's partitions move to the others",
        ),
    ] = 30.0,
    datadir: Annotated[Path | None, typer.Option(help="Faust data directory")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Route events to delivery tasks for every matching active webhook (Faust worker)."""
    # Faust and its dependencies are heavy; import them only for this command.
    from streams.app import WorkerOptions
    from streams.worker import run_worker

    settings = load_settings(check_kafka=True, check_registry=True)
    configure_tracing("cpevents-router")
    options = WorkerOptions(
        web_host=web_host,
        web_port=web_port,
        batch_size=batch_size,
        session_timeout=session_timeout,
        heartbeat_interval=min(3.0, session_timeout / 3),
        processors=tuple(processor or ()),
        datadir=datadir,
    )
    try:
        run_worker(settings, options, loglevel=loglevel)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
