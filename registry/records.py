"""The records of the registry's compacted topic (``_schemas``): JSON keys and values in the
spirit of Confluent's own topic layout. A key names one slot (a subject version, a subject's
or the global config or mode, the writer announcement, the highest schema id ever given);
compaction keeps its latest value; a tombstone (null value) removes the slot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from registry.canonical import parse_schema
from registry.errors import RegistryError

T = TypeVar("T")

SCHEMA = "SCHEMA"
CONFIG = "CONFIG"
MODE = "MODE"
WRITER = "WRITER"
ID_WATERMARK = "ID_WATERMARK"


def _key(document: dict[str, Any]) -> str:
    # Sorted, compact JSON: the same slot always has the same bytes, so compaction collapses it.
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SchemaRecord:
    """Version ``version`` of ``subject`` is schema ``schema_id``; ``deleted``: soft deleted."""

    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False

    @property
    def key(self) -> str:
        return schema_key(self.subject, self.version)

    def value(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.schema_id,
            "schema": self.schema,
            "deleted": self.deleted,
        }


@dataclass(frozen=True)
class ConfigRecord:
    """The compatibility level of ``subject``, or the global one when ``subject`` is None."""

    subject: str | None
    level: str

    @property
    def key(self) -> str:
        return config_key(self.subject)

    def value(self) -> dict[str, Any]:
        return {"compatibilityLevel": self.level}


@dataclass(frozen=True)
class ModeRecord:
    """The mode of ``subject``, or the global one when ``subject`` is None. Key and value as
    Confluent and Karapace write them: ``{"keytype":"MODE","subject":...}``, ``{"mode":...}``."""

    subject: str | None
    mode: str

    @property
    def key(self) -> str:
        return mode_key(self.subject)

    def value(self) -> dict[str, Any]:
        return {"mode": self.mode}


@dataclass(frozen=True)
class IdWatermarkRecord:
    """The highest schema id ever given. Written with every permanent delete: compaction drops
    the deleted versions, and without this slot a restarted registry would plan ids from the
    remaining ones and could give a deleted id to another schema."""

    schema_id: int

    @property
    def key(self) -> str:
        return _key({"keytype": ID_WATERMARK})

    def value(self) -> dict[str, Any]:
        return {"id": self.schema_id}


@dataclass(frozen=True)
class WriterRecord:
    """Written by an instance when it becomes the single writer: where to forward writes."""

    url: str
    instance: str

    @property
    def key(self) -> str:
        return _key({"keytype": WRITER})

    def value(self) -> dict[str, Any]:
        return {"url": self.url, "instance": self.instance}


Record = SchemaRecord | ConfigRecord | ModeRecord | IdWatermarkRecord | WriterRecord


def schema_key(subject: str, version: int) -> str:
    return _key({"keytype": SCHEMA, "subject": subject, "version": version})


def config_key(subject: str | None) -> str:
    return _key({"keytype": CONFIG, "subject": subject})


def mode_key(subject: str | None) -> str:
    return _key({"keytype": MODE, "subject": subject})


@dataclass(frozen=True)
class Write:
    """One record to produce: ``record`` None is a tombstone for ``key``."""

    key: str
    record: Record | None

    @classmethod
    def put(cls, record: Record) -> Write:
        return cls(record.key, record)

    @classmethod
    def tombstone(cls, key: str) -> Write:
        return cls(key, None)

    def value_bytes(self) -> bytes | None:
        if self.record is None:
            return None
        return json.dumps(self.record.value(), separators=(",", ":")).encode()


def decode(key: bytes | None, value: bytes | None) -> tuple[str, Record | None]:
    """The canonical key and the record (None for a tombstone); ValueError naming the problem
    for bytes that are not a registry record."""
    if not key:
        raise ValueError("record without a key")
    try:
        key_doc = json.loads(key)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"key is not JSON: {exc}") from None
    if not isinstance(key_doc, dict) or not isinstance(key_doc.get("keytype"), str):
        raise ValueError("key: a JSON object with a string keytype expected")
    canonical = _key({k: v for k, v in key_doc.items() if k != "magic"})
    if value is None:
        return canonical, None
    try:
        doc = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("value: a JSON object expected")
    try:
        return canonical, _record(key_doc, doc)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{key_doc['keytype']} value: missing or mistyped field {exc}") from None


def _record(key_doc: dict[str, Any], doc: dict[str, Any]) -> Record:
    keytype = key_doc["keytype"]
    if keytype == SCHEMA:
        record = SchemaRecord(
            subject=_typed(doc, "subject", str),
            version=_typed(doc, "version", int),
            schema_id=_typed(doc, "id", int),
            schema=_typed(doc, "schema", str),
            deleted=bool(doc.get("deleted", False)),
        )
        try:
            parse_schema(record.schema)
        except RegistryError as exc:
            raise ValueError(f"SCHEMA value: {exc.message}") from None
        return record
    if keytype == CONFIG:
        subject = key_doc.get("subject")
        return ConfigRecord(
            subject=subject if isinstance(subject, str) else None,
            level=_typed(doc, "compatibilityLevel", str),
        )
    if keytype == MODE:
        subject = key_doc.get("subject")
        return ModeRecord(
            subject=subject if isinstance(subject, str) else None,
            mode=_typed(doc, "mode", str),
        )
    if keytype == ID_WATERMARK:
        return IdWatermarkRecord(schema_id=_typed(doc, "id", int))
    if keytype == WRITER:
        return WriterRecord(url=_typed(doc, "url", str), instance=_typed(doc, "instance", str))
    raise ValueError(f"unknown keytype {keytype!r}")


def _typed(doc: dict[str, Any], field: str, kind: type[T]) -> T:
    value = doc[field]
    # bool is an int in Python, never a version or an id.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TypeError(f"{field!r} must be {kind.__name__}")
    return value
