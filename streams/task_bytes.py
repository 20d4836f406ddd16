"""Delivery-task values built from an event record's bytes, without decoding and re-encoding it.

An Avro record's binary form is the concatenation of its fields' encodings, and a DeliveryTask is
``id, webhook_id, tenant_id, url, event, created_at``. So when an event record was written with
exactly our Event schema, its task is: the wire header of the DeliveryTask schema, the encoded
id, webhook id, tenant id and url, the event record's Avro body as it came (``value[5:]``), and
the encoded ``created_at``. That is what ``Serde.tasks.encode`` writes for the decoded event (a
unit test compares both) at a fraction of the cost: the router's hot path.

:func:`scan_event` walks the event's bytes once and accepts a record only if the full decoder
(``Serde.events.decode``) would accept it too: the same Avro checks as the flat reader (lengths,
union branches, UTF-8, varint sizes, no trailing bytes) and the same contract checks as
``Event.from_avro`` (TypeIDs, catalog type, tenant, JSON-object payload, timestamp range). Anything
else returns None and the caller takes the full path, which gives the dead-letter reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from schemas import ids
from schemas.catalog import EventType
from schemas.errors import ContractError

_EVENT_TYPES: Final = frozenset(t.value for t in EventType)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
# timestamp-micros values a datetime can hold (the decoder raises beyond them)
_MIN_US: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _ONE_US
_MAX_US: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_US
_HEADER_SIZE: Final = 5
_BOM: Final = "\ufeff"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_PAYLOAD: Final = json.JSONDecoder(parse_constant=_reject_constant)


def avro_long(value: int) -> bytes:
    """``value`` as an Avro long (zig-zag varint)."""
    number = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_SHORT_LENGTHS: Final = tuple(avro_long(n) for n in range(64))  # one byte each


def avro_string(text: str) -> bytes:
    """``text`` as an Avro string (length, then UTF-8)."""
    data = text.encode()
    size = len(data)
    return (_SHORT_LENGTHS[size] if size < 64 else avro_long(size)) + data


@dataclass(frozen=True, slots=True)
class EventHead:
    """What routing needs from an event record, plus its tenant's encoded bytes."""

    id: str
    type: str
    tenant_id: str
    tenant_avro: bytes  # the tenant_id field's encoding, as written (a task field too)


def scan_event(value: bytes) -> EventHead | None:
    """The head of a wire-format Event record written with our exact schema; None unless the
    full decoder would accept the record (see the module docstring)."""
    try:
        return _scan(value)
    except (ValueError, IndexError, ContractError):
        return None


def _scan(data: bytes) -> EventHead | None:
    size = len(data)
    pos = _HEADER_SIZE
    fields: list[str | None] = []
    tenant_start = tenant_end = 0
    # id, type, tenant_id: string; instance_id, actor_id: [null, string]; payload: string
    for index in range(6):
        if index in (3, 4):
            branch = data[pos]
            pos += 1
            if branch == 0:
                fields.append(None)
                continue
            if branch != 2:
                return None
        start = pos
        byte = data[pos]
        if byte < 0x80:  # one-byte length, by far the most common: skip the general reader
            length = (byte >> 1) ^ -(byte & 1)
            pos += 1
        else:
            length, pos = _varint(data, pos)
        end = pos + length
        if length < 0 or end > size:
            return None
        fields.append(data[pos:end].decode())
        pos = end
        if index == 2:
            tenant_start, tenant_end = start, end
    micros, pos = _varint(data, pos)
    if pos != size or not _MIN_US <= micros <= _MAX_US:
        return None
    event_id, event_type, tenant_id, instance_id, _actor_id, payload = fields
    if event_id is None or event_type is None or tenant_id is None:
        return None  # never: these are plain string fields
    if event_type not in _EVENT_TYPES or not tenant_id.strip():
        return None
    ids.check_id(event_id, ids.EVENT, "id")
    if instance_id is not None:
        ids.check_id(instance_id, ids.INSTANCE, "instance_id")
    text = payload or "{}"
    if text.startswith(_BOM) or not isinstance(_PAYLOAD.decode(text), dict):
        return None
    return EventHead(event_id, event_type, tenant_id, data[tenant_start:tenant_end])


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos`` (at most 10 bytes, wrapped to 64 bits like the decoders)."""
    byte = data[pos]
    pos += 1
    number = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        shift += 7
    number &= 0xFFFFFFFFFFFFFFFF
    return (number >> 1) ^ -(number & 1), pos


class TaskBytes:
    """Builds DeliveryTask values for one deliveries topic from scanned event records."""

    def __init__(self, task_schema_id: int) -> None:
        self._header = bytes([0]) + task_schema_id.to_bytes(4, "big")
        # webhook id -> (url, encoded webhook_id, encoded url); a config update can change the url
        self._webhooks: dict[str, tuple[str, bytes, bytes]] = {}

    def build(
        self,
        delivery_id: str,
        webhook_id: str,
        url: str,
        head: EventHead,
        value: bytes,
        created_at_avro: bytes,
    ) -> bytes:
        """The task of event record ``value`` (scanned as ``head``) for a webhook.

        ``created_at_avro`` is ``avro_long(created_at in µs)``, computed once per batch.
        """
        cached = self._webhooks.get(webhook_id)
        if cached is None or cached[0] != url:
            cached = (url, avro_string(webhook_id), avro_string(url))
            self._webhooks[webhook_id] = cached
        return b"".join(
            (
                self._header,
                avro_string(delivery_id),
                cached[1],
                head.tenant_avro,
                cached[2],
                memoryview(value)[_HEADER_SIZE:],
                created_at_avro,
            )
        )
