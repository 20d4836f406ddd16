"""``cpevents gateway`` (serve the HTTP gateway) and ``cpevents webhooks …`` (its client).

The webhook commands talk to a running gateway over HTTP rather than to Kafka directly, so
validation, tenant scoping and secret encryption live in one place. They use
``--url``/``CPEVENTS_GATEWAY_URL`` (default http://127.0.0.1:8080) and ``--token``/
``CPEVENTS_TOKEN`` (default: ``CPEVENTS_ADMIN_TOKEN``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import typer
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import configure_tracing, console, err_console, load_settings
from producers.gateway.server import serve

webhooks_app = typer.Typer(help="Manage webhooks through the gateway.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

UrlOption = Annotated[
    str, typer.Option("--url", envvar="CPEVENTS_GATEWAY_URL", help="Gateway base URL")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="CPEVENTS_TOKEN", help="Bearer token (default: admin token)"),
]
DEFAULT_URL = "http://127.0.0.1:8080"


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port")] = None,
) -> None:
    """Serve the HTTP gateway (event ingest, webhook CRUD, delivery queries)."""
    settings = load_settings(check_kafka=True, check_registry=True)
    configure_tracing("cpevents-gateway")
    updates: dict[str, Any] = {}
    if host is not None:
        updates["gateway_host"] = host
    if port is not None:
        updates["gateway_port"] = port
    settings = settings.model_copy(update=updates)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    console.print(f"gateway on http://{settings.gateway_host}:{settings.gateway_port}")
    try:
        asyncio.run(serve(settings))
    except ValueError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _request(
    url: str, token: str | None, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    if token is None:
        admin = load_settings().admin_token
        token = admin.get_secret_value() if admin is not None else None
    if not token:
        err_console.print("[red]no token:[/red] pass --token or set CPEVENTS_TOKEN")
        raise typer.Exit(2)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        field = f" ({problem['field']})" if "field" in problem else ""
        err_console.print(f"[red]{exc.code}{field}:[/red] {problem.get('detail', exc.reason)}")
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        err_console.print(f"[red]gateway unreachable at {url}:[/red] {exc.reason}")
        raise typer.Exit(1) from None


def _print_webhook(webhook: dict[str, Any]) -> None:
    table = Table("field", "value")
    for key, value in webhook.items():
        table.add_row(
            key, json.dumps(value) if isinstance(value, list | bool | dict) else str(value)
        )
    console.print(table)


@webhooks_app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="Endpoint URL (http:// or https://)")],
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Type or pattern; repeatable")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant (required with the admin token)")
    ] = None,
    inactive: Annotated[bool, typer.Option(help="Create disabled")] = False,
    payload_filter: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help='Payload filter as JSON, e.g. \'{"payload": {"region": "eu"}}\' '
            "(the gateway validates it)",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="Custom header 'Name: value' sent with every attempt (stored encrypted, "
            "never shown again); repeatable",
        ),
    ] = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit",
            help="Sends per second, optionally with a burst: 10 or 10/20 (absent: unlimited)",
        ),
    ] = None,
    gateway_url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create a webhook; prints its signing secret (shown only this once)."""
    body: dict[str, Any] = {"url": url, "events": event or [], "active": not inactive}
    if tenant:
        body["tenant_id"] = tenant
    if payload_filter is not None:
        body["filter"] = _json_option(payload_filter, "filter")
    if header:
        body["headers"] = _header_option(header)
    if rate_limit is not None:
        body["rate_limit"] = _rate_limit_option(rate_limit)
    _, created = _request(gateway_url, token, "POST", "/v1/webhooks", body)
    _print_webhook(created)


def _header_option(values: list[str]) -> dict[str, str]:
    """``--header 'Name: value'`` values as the ``headers`` object; exit 2 on a bad one (the
    gateway checks names and values; the value is never printed)."""
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            err_console.print("[red]invalid option --header:[/red] expected 'Name: value'")
            raise typer.Exit(2)
        headers[name.strip()] = text.strip()
    return headers


def _rate_limit_option(text: str) -> dict[str, float]:
    """``--rate-limit 10`` or ``10/20`` (per second / burst) as the ``rate_limit`` object; the
    gateway checks the ranges."""
    rate, _, burst = text.partition("/")
    try:
        limit: dict[str, float] = {"per_second": float(rate)}
        if burst:
            limit["burst"] = int(burst)
    except ValueError:
        err_console.print("[red]invalid option --rate-limit:[/red] expected N or N/BURST")
        raise typer.Exit(2) from None
    return limit


def _json_option(text: str, option: str) -> Any:
    """The JSON value of ``--option``; exit 2 naming the option when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as exc:
        err_console.print(f"[red]invalid option --{option}:[/red] not JSON ({exc})")
        raise typer.Exit(2) from None


@webhooks_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Admin only: one tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    gateway_url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """List webhooks (a tenant token sees its own)."""
    path = "/v1/webhooks" + (f"?tenant_id={urllib.parse.quote(tenant)}" if tenant else "")
    _, body = _request(gateway_url, token, "GET", path)
    if as_json:
        console.print_json(data=body)
        return
    table = Table("id", "tenant", "url", "events", "active")
    for webhook in body["webhooks"]:
        table.add_row(
            webhook["id"],
            webhook["tenant_id"],
            webhook["url"],
            ",".join(webhook["events"]) or "*",
            str(webhook["active"]),
        )
    console.print(table)


@webhooks_app.command("delete")
def delete(
    webhook_id: Annotated[str, typer.Argument(help="hook_…")],
    gateway_url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete a webhook."""
    _request(gateway_url, token, "DELETE", f"/v1/webhooks/{webhook_id}")
    console.print(f"deleted {webhook_id}")


@webhooks_app.command("rotate")
def rotate(
    webhook_id: Annotated[str, typer.Argument(help="hook_…")],
    gateway_url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Rotate a webhook's secret; prints the new one (the old stays valid for the overlap)."""
    _, rotated = _request(gateway_url, token, "POST", f"/v1/webhooks/{webhook_id}/rotate-secret")
    _print_webhook(rotated)


__all__ = ["gateway", "webhooks_app"]
