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
from cpevents.cli.common import configure_tracing, console, err_console, load_settings
from delivery.dlt_admin import DeadLetterFilter, read_dead_letters, redrive
from delivery.worker import DeliveryWorker, group_id
from plumbing.kafka.lag import watch_lag
from plumbing.metrics import serve_metrics
from schemas.errors import ContractError
from schemas.timestamps import parse_rfc3339

dlt_app = typer.Typer(help="Inspect and redrive dead-lettered deliveries.", no_args_is_help=True)
app.add_typer(dlt_app, name="dlt")


@worker_app.command("delivery")
def worker_delivery(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    web_host: Annotated[
        str | None,
        typer.Option(
            help="Where /metrics and /healthz listen (default CPEVENTS_DELIVERY_WEB_HOST)"
        ),
    ] = None,
    web_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics and /healthz (default CPEVENTS_DELIVERY_WEB_PORT, 6067)"
        ),
    ] = None,
) -> None:
    """Deliver tasks to webhooks: signed POSTs, retries through delay topics, dead letters."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = load_settings(check_kafka=True, check_registry=True)
    configure_tracing("cpevents-delivery")
    host = web_host or settings.delivery_web_host
    port = settings.delivery_web_port if web_port is None else web_port

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker = DeliveryWorker(settings)
        topics = settings.topics
        watch_lag(
            settings,
            group_id(settings),
            [topics.deliveries, *(topics.retry(t) for t in settings.retry_tiers)],
        )
        runner, bound = await serve_metrics(host, port, lambda: not stop.is_set())
        logging.getLogger(__name__).info("metrics on http://%s:%s/metrics", host, bound)
        try:
            await worker.run(stop)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except ValueError as exc:
        # Configuration: no CPEVENTS_SECRET_KEY, or one that opens none of the webhooks'
        # secrets (delivery.webhooks.SecretKeyError: every task would be dead-lettered).
        err_console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:  # the metrics port is taken
        err_console.print(f"[red]cannot start:[/red] {exc} (--web-port)")
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
