"""``cpevents replay``: audit topics over a time range, and redeliver history to a webhook."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cpevents.cli import app
from cpevents.cli.common import console, err_console, load_settings
from schemas.errors import ContractError
from schemas.event import Event
from schemas.serde import Serde
from streams.audit.filters import RecordFilter
from streams.audit.pipeline import OnUndecodable, ReplayStats
from streams.audit.reader import RangeReader, RawRecord, ReplayError
from streams.audit.redeliver import (
    RedeliveryError,
    TaskSender,
    load_webhook,
    redelivery_filter,
)
from streams.audit.render import JsonLines, columns, table_row
from streams.audit.run import AuditTopic, ReplayRequest, entries
from streams.audit.timerange import parse_range

TABLE_PAGE = 100  # rows per printed table: a table holds its rows, so print it in pages


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
) -> None:
    """Replay event topics (or the attempt log, or dead letters) over a time range, in timestamp
    order across partitions. JSON lines on stdout; problems and the summary on stderr."""
    settings = load_settings()
    try:
        if output_format not in ("json", "table"):
            raise ContractError("format", f"must be json or table, got {output_format!r}")
        if follow and until is not None:
            raise ContractError("follow", "cannot be combined with --until")
        if redeliver and (webhook is None or topic is not AuditTopic.EVENTS or follow):
            raise ContractError("redeliver", "needs --webhook, the events topic and no --follow")
        if topic is not AuditTopic.EVENTS and (subsystem or redeliver):
            raise ContractError("subsystem", "applies to the events topic only")
        if topic is AuditTopic.DELIVERIES and (event_type or instance):
            raise ContractError("type", "--type/--instance do not apply to --topic deliveries")
        selection = RecordFilter.of(
            tenants=tenant or (),
            types=event_type or (),
            instances=instance or (),
            webhooks=[webhook] if webhook and topic is not AuditTopic.EVENTS else (),
        )
        request = ReplayRequest(
            topic=topic,
            time_range=parse_range(since, until, int(time.time() * 1000)),
            selection=selection,
            subsystems=tuple(subsystem or ()),
        )
        request.topics(settings)  # checks the subsystems
    except ContractError as exc:
        err_console.print(f"[red]invalid option --{exc.field}:[/red] {exc.reason}", highlight=False)
        raise typer.Exit(2) from None

    serde = Serde(settings.schema_registry_url)
    sender: TaskSender | None = None
    if webhook is not None and topic is AuditTopic.EVENTS:
        found = load_webhook(settings, serde, webhook)
        try:
            selection = redelivery_filter(request.selection, found, webhook)
        except ContractError as exc:
            err_console.print(f"[red]refused ({exc.field}):[/red] {exc.reason}", highlight=False)
            raise typer.Exit(2) from None
        request = ReplayRequest(request.topic, request.time_range, selection, request.subsystems)
        assert found is not None
        if redeliver:
            sender = TaskSender(settings, serde, found)

    reader = RangeReader(
        settings,
        request.topics(settings),
        request.time_range,
        follow=follow,
        headers=request.reads_headers,
    )
    try:
        with reader:
            if sender is not None and not yes:
                count = _count(request, reader, serde)
                if count == 0:
                    err_console.print("nothing to redeliver")
                    return
                typer.confirm(
                    f"Redeliver {count} events to webhook {webhook}?", abort=True, err=True
                )
            stats = _emit(request, reader, serde, output_format, sender)
        if sender is not None:
            sender.close()
    except (ReplayError, RedeliveryError) as exc:
        err_console.print(f"[red]replay failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    summary = f"{stats.matched} of {stats.read} records matched"
    if stats.undecodable:
        summary += f", {stats.undecodable} undecodable skipped"
    if sender is not None:
        summary += f"; {sender.sent} redelivered to {webhook}"
    err_console.print(summary, highlight=False)


def _report_undecodable(out: Console) -> OnUndecodable:
    def report(record: RawRecord, reason: str) -> None:
        out.print(
            f"undecodable record {record.coordinates} skipped: {reason}",
            markup=False,
            highlight=False,
        )

    return report


def _count(request: ReplayRequest, reader: RangeReader, serde: Serde) -> int:
    stats = ReplayStats()
    for _ in entries(request, reader.records(), serde, lambda _r, _e: None, stats):
        pass
    return stats.matched


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
    output_format: str,
    sender: TaskSender | None,
) -> ReplayStats:
    stats = ReplayStats()
    lines = JsonLines(sys.stdout.buffer) if output_format == "json" else None
    page: list[tuple[str, ...]] = []
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

        records = reader.records(on_batch)
        # Redelivery needs Event objects; printing alone takes events in their JSON form.
        as_json = lines is not None and sender is None
        for record, entry in entries(
            request, records, serde, report, stats, events_as_json=as_json
        ):
            if sender is not None and isinstance(entry, Event):
                sender.send(entry)
            if lines is not None:
                lines.write(entry)
            else:
                page.append(table_row(entry, record.timestamp_ms))
                if len(page) >= TABLE_PAGE:
                    _print_table(request, page)
                    page = []
        if page:
            _print_table(request, page)
    if lines is not None:
        lines.flush()
    sys.stdout.flush()
    return stats


def _print_table(request: ReplayRequest, rows: list[tuple[str, ...]]) -> None:
    table = Table(*columns(str(request.topic)))
    for row in rows:
        table.add_row(*row)
    # Redirected to a file, rich would assume 80 columns and wrap every id: go wide instead.
    out = console if console.is_terminal else Console(width=200)
    out.print(table, markup=False, highlight=False)
