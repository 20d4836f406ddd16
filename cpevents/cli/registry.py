"""``cpevents registry``: the Confluent-compatible schema registry, stored in Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from registry.server import start_registry


@app.command()
def registry(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8081, help="Port to listen on (0 picks a free one)"),
    advertised_url: str | None = typer.Option(
        None,
        help="URL other registry instances forward writes to (default: http://HOST:PORT)",
    ),
) -> None:
    """Serve the schema registry API (Confluent-compatible) until interrupted. Its state lives
    in the compacted topic CPEVENTS_REGISTRY_TOPIC (default _schemas), created if missing; run
    several instances on one topic and they elect one writer."""
    settings = load_settings()

    async def serve() -> None:
        try:
            handle = await start_registry(settings, host, port, advertised_url=advertised_url)
        except (OSError, RuntimeError, TimeoutError) as exc:
            err_console.print(f"[red]registry failed to start:[/red] {exc}")
            raise typer.Exit(1) from None
        role = "writer" if handle.store.is_writer else "follower (forwards writes)"
        console.print(f"schema registry on {handle.url}, topic {handle.store.topic}, role: {role}")
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stopped.set)
        try:
            await stopped.wait()
        finally:
            await handle.stop()
            console.print("schema registry stopped")

    asyncio.run(serve())
