"""Audit entries as JSON lines (Ctrl Plane's JSON form) or table rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, BinaryIO

from schemas import gojson
from schemas.delivery_records import DeliveryTask, WebhookDelivery
from schemas.event import Event
from schemas.timestamps import format_rfc3339
from schemas.transcode import EventJson
from streams.audit.pipeline import DeadLetterEntry

Entry = Event | EventJson | WebhookDelivery | DeadLetterEntry


def task_json_fields(task: DeliveryTask) -> list[tuple[str, Any]]:
    return [
        ("id", task.id),
        ("webhook_id", task.webhook_id),
        ("tenant_id", task.tenant_id),
        ("url", task.url),
        ("created_at", format_rfc3339(task.created_at)),
        ("event", task.event.to_json_dict()),
    ]


def dead_letter_json_fields(entry: DeadLetterEntry) -> list[tuple[str, Any]]:
    letter = entry.dead_letter
    fields: list[tuple[str, Any]] = [
        ("reason", letter.reason),
        ("source", letter.source),
        ("original_topic", letter.original_topic),
        ("original_partition", letter.original_partition),
        ("original_offset", letter.original_offset),
    ]
    if entry.failed_at_ms is not None:
        fields.append(("failed_at_ms", entry.failed_at_ms))
    extra = {k: v for k, v in letter.extra.items() if k != "failed-at"}
    if extra:
        fields.append(("extra", extra))
    if entry.task is not None:
        fields.append(("task", dict(task_json_fields(entry.task))))
    else:
        fields.append(("task_error", entry.task_error or ""))
    return fields


def json_line(entry: Entry) -> str:
    """One line of output; the same entry always gives the same bytes."""
    if isinstance(entry, Event):
        return entry.to_json()
    if isinstance(entry, EventJson):
        return entry.json.decode()
    if isinstance(entry, WebhookDelivery):
        return gojson.dumps_ordered(list(entry.to_json_dict().items()))
    return gojson.dumps_ordered(dead_letter_json_fields(entry))


class JsonLines:
    """JSON lines written to a binary stream in chunks (one write per chunk, not per line).

    Call ``flush`` whenever the reader has nothing more at hand (after each fetched batch), so a
    followed topic still shows its records as they arrive.
    """

    def __init__(self, out: BinaryIO, chunk_lines: int = 1000) -> None:
        self._out = out
        self._chunk = chunk_lines
        self._lines: list[bytes] = []

    def write(self, entry: Entry) -> None:
        lines = self._lines
        # Events transcoded from Avro are already the line's bytes.
        lines.append(entry.json if isinstance(entry, EventJson) else json_line(entry).encode())
        if len(lines) >= self._chunk:
            self.flush()

    def write_lines(self, lines: list[bytes]) -> None:
        """Write ready-made JSON lines (without their newlines), e.g. ``json_line_batches``'."""
        self._lines += lines
        if len(self._lines) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._lines.append(b"")  # the last line's newline
            self._out.write(b"\n".join(self._lines))
            self._lines = []
        self._out.flush()


EVENT_COLUMNS = ("timestamp", "type", "tenant", "instance", "id", "payload")
DELIVERY_COLUMNS = ("updated", "status", "code", "attempts", "webhook", "event", "error")
DEAD_LETTER_COLUMNS = ("failed at", "reason", "source", "webhook", "event", "type")


def columns(entry_kind: str) -> tuple[str, ...]:
    """The table columns for ``events``, ``deliveries`` or ``dlt``."""
    return {"events": EVENT_COLUMNS, "deliveries": DELIVERY_COLUMNS, "dlt": DEAD_LETTER_COLUMNS}[
        entry_kind
    ]


def table_row(entry: Entry, timestamp_ms: int) -> tuple[str, ...]:
    """One table row; ``timestamp_ms`` is the Kafka record's timestamp."""
    if isinstance(entry, EventJson):
        entry = Event.from_json(entry.json)
    if isinstance(entry, Event):
        return (
            format_rfc3339(entry.timestamp),
            str(entry.type),
            entry.tenant_id,
            entry.instance_id or "",
            entry.id,
            gojson.dumps(entry.payload),
        )
    if isinstance(entry, WebhookDelivery):
        return (
            format_rfc3339(entry.updated_at),
            str(entry.status),
            str(entry.status_code or ""),
            str(entry.attempts),
            entry.webhook_id,
            entry.event_id,
            entry.error or "",
        )
    task = entry.task
    failed_at_ms = entry.failed_at_ms if entry.failed_at_ms is not None else timestamp_ms
    return (
        format_rfc3339(datetime.fromtimestamp(failed_at_ms / 1000, UTC)),
        entry.dead_letter.reason,
        entry.dead_letter.source,
        task.webhook_id if task else "",
        task.event.id if task else "",
        str(task.event.type) if task else "",
    )
