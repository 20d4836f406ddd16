"""``cpevents registry``: the Confluent-compatible schema registry, stored in Kafka, and
``cpevents registry add-user``: its users and permissions (Karapace's auth-file format)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from registry.auth import AuthFileError, add_user
from registry.server import start_registry

registry_app = typer.Typer(
    help="Serve the schema registry (no sub-command), or manage its users (add-user)."
)
app.add_typer(registry_app, name="registry")


@registry_app.callback(invoke_without_command=True)
def registry(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1",
        help="Address to listen on; a non-loopback one needs CPEVENTS_REGISTRY_AUTH_FILE",
    ),
    port: int = typer.Option(8081, help="Port to listen on (0 picks a free one)"),
    advertised_url: str | None = typer.Option(
        None,
        help="URL other registry instances forward writes to (default: http://HOST:PORT)",
    ),
) -> None:
    """Serve the schema registry API (Confluent-compatible) until interrupted. Its state lives
    in the compacted topic CPEVENTS_REGISTRY_TOPIC (default _schemas), created if missing; run
    several instances on one topic and they elect one writer. With CPEVENTS_REGISTRY_AUTH_FILE
    every request needs HTTP Basic credentials of a user of that file; without it the registry
    only listens on loopback addresses."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(check_kafka=True)

    async def serve() -> None:
        try:
            handle = await start_registry(settings, host, port, advertised_url=advertised_url)
        except (OSError, RuntimeError, TimeoutError, AuthFileError) as exc:
            err_console.print(f"[red]registry failed to start:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
        role = "writer" if handle.store.is_writer else "follower (forwards writes)"
        secured = "HTTP Basic auth" if settings.registry_auth_file else "no auth (loopback)"
        console.print(
            f"schema registry on {handle.url}, topic {handle.store.topic}, role: {role}, {secured}"
        )
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


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@registry_app.command("add-user")
def add_user_command(
    file: Annotated[Path, typer.Argument(help="Auth file (created if missing), Karapace's JSON")],
    username: Annotated[str, typer.Argument(help="User name (the HTTP Basic user)")],
    read: Annotated[
        list[str] | None,
        typer.Option("--read", help="Regex of subjects the user may read (repeatable)"),
    ] = None,
    write: Annotated[
        list[str] | None,
        typer.Option(
            "--write",
            help="Regex of subjects the user may register, delete, configure and read (repeatable)",
        ),
    ] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="Write on every subject and on Config: (global config and mode, permanent "
            "deletes, compatibility NONE)",
        ),
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line")
    ] = False,
) -> None:
    """Add a user to a registry auth file, or give an existing one a new password.

    Permissions are granted on the subjects matching the given regexes. The password is asked
    for (or read from stdin) and stored as a salted scrypt hash; it is never printed. A running
    registry picks the change up within a second.
    """
    read, write = read or [], write or []
    password = _read_password(password_stdin)
    try:
        created = add_user(file, username, password, read=read, write=write, admin=admin)
    except (AuthFileError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    granted = [f"Read {r}" for r in read] + [f"Write {w}" for w in write]
    if admin:
        granted.append("admin")
    action = "added" if created else "updated (new password)"
    console.print(
        f"user {escape(username)} {action} in {escape(str(file))}; "
        f"granted: {escape(', '.join(granted)) or 'nothing (add --read/--write/--admin)'}"
    )
