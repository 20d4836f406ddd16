"""``cpevents dev up``: the embedded default stack in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from plumbing.settings import Settings

if TYPE_CHECKING:
    # Only for annotations: the local-stack supervisor (and the local broker behind it) is
    # dev-only tooling that a production worker started by this same CLI must never load.
    from cpevents.stack import Service, StackPorts

dev_app = typer.Typer(help="Run the whole platform locally.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")


def platform_services(settings: Settings, ports: StackPorts) -> list[Service]:
    """The platform's services in start order: registry, gateway, router, delivery."""
    # Imported here: the CLI is the one place allowed to know every component, and only the
    # commands that start the stack should pay for importing Faust (or the stack tooling).
    from cpevents.stack import Service, group_ready, http_ok
    from delivery.worker import group_id as delivery_group
    from streams.app import app_id as streams_group

    registry = f"http://127.0.0.1:{ports.registry}"
    gateway = f"http://127.0.0.1:{ports.gateway}"
    return [
        Service(
            "registry",
            ["registry", "--host", "127.0.0.1", "--port", str(ports.registry)],
            ready=http_ok(f"{registry}/subjects"),
            url=registry,
        ),
        Service(
            "gateway",
            ["gateway", "--host", "127.0.0.1", "--port", str(ports.gateway)],
            ready=http_ok(f"{gateway}/healthz"),
            url=gateway,
        ),
        Service(
            "streams",
            ["worker", "streams", "--web-port", str(ports.streams_web)],
            ready=group_ready(settings, streams_group(settings)),
            url=f"http://127.0.0.1:{ports.streams_web}",
        ),
        Service(
            "delivery",
            ["worker", "delivery", "--web-port", str(ports.delivery_web)],
            ready=group_ready(settings, delivery_group(settings)),
            url=f"http://127.0.0.1:{ports.delivery_web}",
        ),
    ]


def metrics_urls(services: list[Service]) -> list[str]:
    """Where each service of the stack serves Prometheus metrics."""
    return [f"{service.url}/metrics" for service in services if service.url]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def curl_examples(gateway: str, token: str, receiver: str) -> str:
    """Ready-to-copy commands: create a webhook, then publish an event through the gateway."""
    auth = f"-H 'Authorization: Bearer {token}' -H 'Content-Type: application/json'"
    return (
        f"curl -sS -X POST {gateway}/v1/webhooks {auth} \\\n"
        f'  -d \'{{"tenant_id":"ten_demo","url":"{receiver}","events":["instance.*"]}}\'\n'
        f"curl -sS -X POST {gateway}/v1/events {auth} \\\n"
        '  -d \'{"type":"instance.created","tenant_id":"ten_demo","payload":{"name":"api"}}\'\n'
        f"curl -sS {gateway}/v1/deliveries -H 'Authorization: Bearer {token}'"
    )


def print_commands(out: Console, text: str) -> None:
    """Print ready-to-copy commands as they are: never wrapped at the terminal's width (a
    line broken inside a quoted JSON body or a header no longer pastes), nor styled."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@dev_app.command("up")
def dev_up(
    registry_port: Annotated[int, typer.Option(help="Schema registry port")] = 8081,
    gateway_port: Annotated[
        int | None, typer.Option(help="Gateway port (default CPEVENTS_GATEWAY_PORT)")
    ] = None,
    streams_web_port: Annotated[int, typer.Option(help="Faust web port of the router")] = 6066,
    delivery_web_port: Annotated[
        int, typer.Option(help="Metrics port of the delivery worker")
    ] = 6067,
) -> None:
    """Start Kafka (unless CPEVENTS_BOOTSTRAP_SERVERS is set), the registry, the gateway, a
    streams worker and a delivery worker in the foreground; Ctrl-C stops them all."""
    # Dev-only tooling, imported when this command runs: loading the CLI must not load it.
    from cpevents.stack import LocalStack, StackError, StackPorts, dev_environment

    settings = load_settings()
    extra_env = dev_environment(settings, settings.home)
    ports = StackPorts(
        registry=registry_port,
        gateway=gateway_port or settings.gateway_port,
        streams_web=streams_web_port,
        delivery_web=delivery_web_port,
    )
    stack = LocalStack(settings, platform_services, ports, settings.home / "logs", extra_env)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C stops the stack even when SIGINT was ignored when we started (a background job of
    # a non-interactive shell inherits it ignored, and Python keeps it so).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start(on_progress=lambda message: console.print(f"  {message}"))
    except (StackError, KeyboardInterrupt) as exc:
        err_console.print(f"[red]dev up failed:[/red] {exc}")
        raise typer.Exit(1) from None

    # URLs and pids are never folded (they are copied); the log paths are, if need be.
    table = Table(
        "service",
        Column("where", no_wrap=True),
        Column("pid", no_wrap=True),
        "log",
        title="Ctrl Plane Events is up",
    )
    table.add_row("kafka", stack.settings.bootstrap_servers or "", "", "")
    for service in stack.services:
        pid = str(service.process.pid) if service.process else ""
        table.add_row(service.name, service.url or "(consumer group)", pid, str(service.log_path))
    console.print(table)
    token = extra_env.get("CPEVENTS_ADMIN_TOKEN") or (
        settings.admin_token.get_secret_value() if settings.admin_token else ""
    )
    console.print("Metrics (Prometheus text format):")
    print_commands(console, "\n".join(f"  {url}" for url in metrics_urls(stack.services)))
    console.print("Try it (the webhook URL must accept POSTs; loopback is allowed in dev):")
    print_commands(
        console,
        curl_examples(f"http://127.0.0.1:{ports.gateway}", token, "http://127.0.0.1:9000/hook"),
    )
    from cpevents.stack import portal_link

    # The tenant portal (issue 17): an operator's link, valid for a day.
    try:
        link = portal_link(f"http://127.0.0.1:{ports.gateway}", token)
    except OSError as exc:  # the stack is up: a missing link must not take it down
        link = f"(no link: {exc})"
    console.print("Portal (every tenant; valid 24 h):")
    console.print(f"  {link}", markup=False, highlight=False, soft_wrap=True)
    console.print("Ctrl-C stops everything.")
    try:
        while not (dead := stack.dead_services()):
            time.sleep(0.5)
        for service in dead:
            err_console.print(f"[red]{service.name} exited[/red]:\n{service.log_tail()}")
        exit_code = 1
    except KeyboardInterrupt:
        exit_code = 0
    console.print("stopping…")
    stack.stop()
    console.print("stopped")
    raise typer.Exit(exit_code)
