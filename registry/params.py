"""Request parameters as Confluent's registry reads them (Java semantics)."""

from __future__ import annotations

from collections.abc import Mapping

from registry import errors
from registry.state import LATEST

MAX_VERSION = 2**31 - 1


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Java's ``Boolean.parseBoolean``: ``true`` in any case is true (``True``, ``TRUE`` too),
    anything else false. Clients send ``False``/``True`` (Python) and ``false``/``true``."""
    if value is None:
        return default
    return value.strip().lower() == "true"


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    return parse_bool(query.get(name), default)


def parse_version(text: str) -> int:
    """A version path segment: ``latest`` or -1 (the newest), else 1..2^31-1; 42202 otherwise."""
    if text.strip().lower() == "latest":
        return LATEST
    try:
        version = int(text)
    except ValueError:
        raise errors.invalid_version(text) from None
    if version == LATEST:
        return LATEST
    if not 1 <= version <= MAX_VERSION:
        raise errors.invalid_version(text)
    return version


def parse_id(text: str) -> int:
    """A schema id path segment; unknown shapes are simply schemas that do not exist (40403)."""
    try:
        schema_id = int(text)
    except ValueError:
        raise errors.schema_not_found(f"Schema {text} not found") from None
    if schema_id < 1:
        raise errors.schema_not_found(f"Schema {text} not found")
    return schema_id


def query_int(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(
            f"query parameter {name}: an integer expected, got {value!r}"
        ) from None


def page(items: list[str], offset: int, limit: int) -> list[str]:
    """Confluent's pagination: skip ``offset``, at most ``limit`` items (negative: all)."""
    items = items[max(offset, 0) :]
    return items if limit < 0 else items[:limit]
