"""``cpevents worker delivery`` and ``cpevents dlt list|show|redrive``."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from cpevents.cli import app, worker_app
from cpevents.cli.common import console, err_console, load_settings
from delivery.dlt_admin import DeadLetterFilter, read_dead_letters, redrive
from delivery.worker import DeliveryWorker
from schemas.errors import ContractError
from schemas.timestamps import parse_rfc3339

dlt_app = typer.Typer(help="Inspect and redrive dead-lettered deliveries.", no_args_is_help=True)
app.add_typer(dlt_app, name="dlt")


@worker_app.command("delivery")
def worker_delivery(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Deliver tasks to webhooks: signed POSTs, retries through delay topics, dead letters."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = load_settings(check_kafka=True, check_registry=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await DeliveryWorker(settings).run(stop)

    try:
        asyncio.run(main())
    except ValueError as exc:  # configuration (e.g. no CPEVENTS_SECRET_KEY)
        err_console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None


def _millis(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_rfc3339(value, option).timestamp() * 1000)
    except ContractError as exc:
        err_console.print(f"[red]invalid {option}:[/red] {exc}")
        raise typer.Exit(2) from None


WebhookOpt = Annotated[str | None, typer.Option("--webhook", help="Only this webhook id")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant id")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Failed at or after (RFC 3339)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Failed before (RFC 3339)")]


def _filter(
    webhook: str | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
    refs: list[str] | None = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        webhook_id=webhook,
        tenant_id=tenant,
        since_ms=_millis(since, "--since"),
        until_ms=_millis(until, "--until"),
        refs=frozenset(refs) if refs else None,
    )


def _when(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


@dlt_app.command("list")
def dlt_list(
    webhook: WebhookOpt = None,
    tenant: TenantOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """List dead-lettered deliveries (partition:offset, when, webhook, tenant, reason)."""
    records = read_dead_letters(load_settings(), _filter(webhook, tenant, since, until))
    table = Table("ref", "failed at", "webhook", "tenant", "delivery", "reason")
    for record in records:
        table.add_row(
            record.ref,
            _when(record.failed_at_ms),
            record.webhook_id,
            record.tenant_id,
            record.delivery_id,
            record.info.reason,
        )
    console.print(table)
    console.print(f"{len(records)} dead letters")


@dlt_app.command("show")
def dlt_show(
    ref: Annotated[str, typer.Argument(help="partition:offset, as `dlt list` shows")],
) -> None:
    """Show one dead letter: its headers and the size of the parked task."""
    records = read_dead_letters(load_settings(), DeadLetterFilter(refs=frozenset({ref})))
    if not records:
        err_console.print(f"[red]no dead letter at {ref}[/red]")
        raise typer.Exit(1)
    record = records[0]
    table = Table("header", "value")
    for name, value in record.headers:
        table.add_row(name, value.decode(errors="replace"))
    console.print(table)
    console.print(f"key: {(record.key or b'').decode(errors='replace')}")
    console.print(f"value: {len(record.value or b'')} bytes (Avro DeliveryTask)")


@dlt_app.command("redrive")
def dlt_redrive(
    refs: Annotated[
        list[str] | None, typer.Argument(help="partition:offset refs (default: all matching)")
    ] = None,
    webhook: WebhookOpt = None,
    tenant: TenantOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Send matching dead letters back to the first retry tier with a fresh retry ladder."""
    settings = load_settings()
    records = read_dead_letters(settings, _filter(webhook, tenant, since, until, refs))
    count = redrive(settings, records)
    console.print(
        f"redrove {count} dead letters to {settings.topics.retry(settings.retry_tiers[0])}"
    )
