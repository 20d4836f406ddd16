"""Parse submitted Avro schemas and give them one canonical text, so that the same schema
written with other whitespace or key order is recognised as the same schema (and keeps its id)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import avro.name
import avro.schema

from registry.errors import invalid_schema

AVRO = "AVRO"


@dataclass(frozen=True)
class ParsedSchema:
    """A valid Avro schema: ``text`` is what the registry stores and serves, ``key`` identifies
    it (equal keys mean the same schema), ``avro`` is the Apache ``avro`` parse for checking."""

    text: str
    key: str
    avro: avro.schema.Schema


def parse_schema(text: object, schema_type: object = AVRO) -> ParsedSchema:
    """The parsed schema, or RegistryError 42201 saying why ``text`` is not a valid Avro schema."""
    if schema_type not in (None, AVRO):
        raise invalid_schema(f"schemaType {schema_type!r} is not supported (only AVRO)")
    if not isinstance(text, str) or not text.strip():
        raise invalid_schema("schema must be a non-empty string holding an Avro schema")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid_schema(f"schema is not JSON: {exc}") from None
    try:
        parsed = avro.schema.make_avsc_object(document, avro.name.Names())
    except Exception as exc:  # any failure of the parser means the input is not a schema
        raise invalid_schema(f"{type(exc).__name__}: {exc}") from None
    form: Any = parsed.to_json()
    return ParsedSchema(
        text=json.dumps(form, separators=(",", ":")),
        key=json.dumps(form, separators=(",", ":"), sort_keys=True),
        avro=parsed,
    )


def load_schema(text: str) -> ParsedSchema:
    """Parse a schema the registry stored earlier (it was valid when it was registered)."""
    return parse_schema(text)
