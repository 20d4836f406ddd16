"""Load the ``.avsc`` files, composing named references so each schema stands alone."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

AVRO_DIR = Path(__file__).with_name("avro")
_FILES = {
    "Event": "event.avsc",
    "Webhook": "webhook.avsc",
    "DeliveryTask": "delivery_task.avsc",
    "WebhookDelivery": "webhook_delivery.avsc",
}
_NAMESPACE = "io.ctrlplane.events"


def _inline(node: Any) -> Any:
    # A field typed by another file's record name ("io.ctrlplane.events.Event") is replaced by
    # that record's definition, so registries and foreign clients need no schema references.
    if isinstance(node, str) and node.startswith(_NAMESPACE + "."):
        name = node.rsplit(".", 1)[1]
        if name in _FILES:
            return schema_dict(name)
    if isinstance(node, dict):
        return {key: _inline(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item) for item in node]
    return node


@cache
def schema_str(name: str) -> str:
    """The self-contained schema of record ``name`` as JSON text (what gets registered)."""
    raw = json.loads((AVRO_DIR / _FILES[name]).read_text(encoding="utf-8"))
    return json.dumps(_inline(raw), separators=(",", ":"))


def schema_dict(name: str) -> dict[str, Any]:
    """The parsed, self-contained schema of record ``name`` (Event, Webhook, DeliveryTask, ...).

    A new dict on every call: callers (fastavro's parser among them) may change what they get,
    and a shared one would carry that change into every codec built after.
    """
    parsed: dict[str, Any] = json.loads(schema_str(name))
    return parsed


def schema_names() -> list[str]:
    return list(_FILES)
