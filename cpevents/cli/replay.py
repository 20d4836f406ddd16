"""``cpevents replay``: audit topics over a time range, and redeliver history to a webhook."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import check_reachable, console, err_console, load_settings
from plumbing.registry_client import serde_for
from plumbing.settings import Settings
from schemas.errors import ContractError
from schemas.event import Event
from schemas.serde import Serde
from streams.audit.options import OutputFormat, ReplayOptionError, ReplayOptions, ReplayPlan
from streams.audit.pipeline import OnUndecodable, ReplayStats
from streams.audit.reader import RangeReader, RawRecord, ReplayError
from streams.audit.redeliver import (
    RedeliveryError,
    TaskSender,
    load_webhook,
    redelivery_filter,
)
from streams.audit.render import Entry, JsonLines, columns, table_row
from streams.audit.run import (
    AuditTopic,
    ReplayRequest,
    count_matches,
    entries,
    json_line_batches,
)

TABLE_PAGE = 100


def registry_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the registry client failing to get an answer (an HTTP error from
    the registry, or its HTTP library's connection errors), rather than a bug."""
    return isinstance(exc, SchemaRegistryError) or type(exc).__module__.split(".")[0] in (
        "httpx",
        "httpx2",
    )


# rows per printed table: a table holds its rows, so print it in pages


@app.command()
def replay(
    since: Annotated[
        str | None, typer.Option(help="Start: RFC 3339 or a duration ago (2h, 15m, 30s, 1d)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End (exclusive): RFC 3339 or a duration ago; default now")
    ] = None,
    tenant: Annotated[list[str] | None, typer.Option(help="Only this tenant (repeatable)")] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Event type, wildcards allowed: instance.*, * (repeatable)"),
    ] = None,
    instance: Annotated[
        list[str] | None, typer.Option(help="Only this instance (repeatable)")
    ] = None,
    subsystem: Annotated[
        list[str] | None, typer.Option(help="Event topics to read (repeatable); default all")
    ] = None,
    topic: Annotated[
        AuditTopic,
        typer.Option(help="events, deliveries (attempt log) or dlt (dead-lettered deliveries)"),
    ] = AuditTopic.EVENTS,
    output_format: Annotated[str, typer.Option("--format", help="json (lines) or table")] = "json",
    follow: Annotated[bool, typer.Option(help="Keep reading new records (no --until)")] = False,
    webhook: Annotated[
        str | None,
        typer.Option(help="Webhook id: filter deliveries/dlt, or the target of --redeliver"),
    ] = None,
    redeliver: Annotated[
        bool, typer.Option(help="Send the matching events to --webhook again")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="With --webhook: the past events its current types and filter would have "
            "matched, and how many; sends nothing",
        ),
    ] = False,
) -> None:
    """Replay event topics (or the attempt log, or dead letters) over a time range, in timestamp
    order across partitions. JSON lines on stdout; problems and the summary on stderr."""
    settings = load_settings()
    options = ReplayOptions(
        since=since,
        until=until,
        tenants=tenant or (),
        types=event_type or (),
        instances=instance or (),
        subsystems=subsystem or (),
        topic=topic,
        output_format=output_format,
        follow=follow,
        webhook=webhook,
        redeliver=redeliver,
        yes=yes,
        dry_run=dry_run,
    )
    try:
        plan = options.validate(int(time.time() * 1000))
    except ReplayOptionError as exc:
        err_console.print(f"[red]invalid option --{exc.field}:[/red] {exc.reason}", highlight=False)
        raise typer.Exit(2) from None

    # Options first (they need no connection), then Kafka and the registry: either not
    # answering is one line naming it and the setting, exit 2.
    check_reachable(settings)
    serde = serde_for(settings)
    plan, sender = _target(plan, settings, serde)
    request = plan.request
    reader = RangeReader(
        settings,
        request.topics(settings),
        request.time_range,
        follow=plan.follow,
        # A redelivery continues each event's trace: it needs the records' traceparent.
        headers=request.reads_headers or sender is not None,
    )
    try:
        with reader:
            if sender is not None and plan.confirm:
                count = count_matches(request, reader.records(), serde)
                if count == 0:
                    err_console.print("nothing to redeliver")
                    return
                typer.confirm(
                    f"Redeliver {count} events to webhook {webhook}?", abort=True, err=True
                )
            stats = _emit(request, reader, serde, plan.output_format, sender)
        if sender is not None:
            sender.close()
    except (ReplayError, RedeliveryError) as exc:
        err_console.print(f"[red]replay failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except Exception as exc:
        if not registry_failure(exc):
            raise
        # The registry went away after the start-up check: one line, not a traceback.
        err_console.print(
            f"[red]replay failed:[/red] the schema registry at {settings.schema_registry_url} "
            f"did not answer ({type(exc).__name__}: {exc}); check CPEVENTS_SCHEMA_REGISTRY_URL",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    summary = f"{stats.matched} of {stats.read} records matched"
    if plan.dry_run:
        summary = (
            f"{stats.matched} of {stats.read} events would have matched {webhook} "
            "(its current types and filter)"
        )
    if stats.undecodable:
        summary += f", {stats.undecodable} undecodable skipped"
    if sender is not None:
        summary += f"; {sender.sent} redelivered to {webhook}"
    err_console.print(summary, highlight=False)


def _target(
    plan: ReplayPlan, settings: Settings, serde: Serde
) -> tuple[ReplayPlan, TaskSender | None]:
    """``plan`` narrowed to what its target webhook may receive, and the redelivery sender.

    Without a target webhook (not the events topic, or no --webhook) the plan is unchanged. A
    webhook that cannot receive these events ends the command with exit code 2.
    """
    webhook_id = plan.target_webhook
    if webhook_id is None:
        return plan, None
    found = load_webhook(settings, serde, webhook_id)
    try:
        plan = plan.narrowed(redelivery_filter(plan.request.selection, found, webhook_id))
    except ContractError as exc:
        err_console.print(f"[red]refused ({exc.field}):[/red] {exc.reason}", highlight=False)
        raise typer.Exit(2) from None
    assert found is not None  # redelivery_filter refuses a missing webhook
    return plan, TaskSender(settings, serde, found) if plan.redeliver else None


def _report_undecodable(out: Console) -> OnUndecodable:
    def report(record: RawRecord, reason: str) -> None:
        out.print(
            f"undecodable record {record.coordinates} skipped: {reason}",
            markup=False,
            highlight=False,
        )

    return report


@contextmanager
def _progress() -> Iterator[Progress | None]:
    # Only on a terminal: redirected stderr must stay free of control sequences.
    if not err_console.is_terminal:
        yield None
        return
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        yield progress


def _emit(
    request: ReplayRequest,
    reader: RangeReader,
    serde: Serde,
    output_format: OutputFormat,
    sender: TaskSender | None,
) -> ReplayStats:
    stats = ReplayStats()
    lines = JsonLines(sys.stdout.buffer) if output_format is OutputFormat.JSON else None
    total = None if any(s.end is None for s in reader.spans) else reader.total
    with _progress() as progress:
        report = _report_undecodable(err_console if progress is None else progress.console)
        bar_task = None if progress is None else progress.add_task("replay", total=total)

        def on_batch(consumed: int) -> None:
            # Lines are written in chunks; flushed after each batch so --follow stays live.
            if progress is not None and bar_task is not None:
                progress.update(bar_task, completed=consumed)
            if lines is not None:
                lines.flush()

        # Everything alive now is start-up state (modules, settings, clients), kept to the end:
        # frozen, the collector's full passes during the read walk only the read's objects.
        gc.freeze()
        if lines is not None and sender is None:
            # Printing JSON lines only: a batch at a time, events transcoded from their bytes.
            batches = reader.batches(on_batch)
            for chunk in json_line_batches(request, batches, serde, report, stats):
                lines.write_lines(chunk)
        else:
            # Redelivery needs Event objects, a table its rows: record by record.
            records = entries(request, reader.records(on_batch), serde, report, stats)
            _emit_entries(request, records, lines, sender)
    if lines is not None:
        lines.flush()
    sys.stdout.flush()
    return stats


def _emit_entries(
    request: ReplayRequest,
    records: Iterable[tuple[RawRecord, Entry]],
    lines: JsonLines | None,
    sender: TaskSender | None,
) -> None:
    page: list[tuple[str, ...]] = []
    for record, entry in records:
        if sender is not None and isinstance(entry, Event):
            sender.send(entry, record.headers)
        if lines is not None:
            lines.write(entry)
        else:
            page.append(table_row(entry, record.timestamp_ms))
            if len(page) >= TABLE_PAGE:
                _print_table(request, page)
                page = []
    if page:
        _print_table(request, page)


def _print_table(request: ReplayRequest, rows: list[tuple[str, ...]]) -> None:
    table = Table(*columns(str(request.topic)))
    for row in rows:
        table.add_row(*row)
    # Redirected to a file, rich would assume 80 columns and wrap every id: go wide instead.
    out = console if console.is_terminal else Console(width=200)
    out.print(table, markup=False, highlight=False)
