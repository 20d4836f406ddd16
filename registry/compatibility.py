"""Compatibility levels and checks, delegated to the Apache ``avro`` package's
reader/writer checker (the one Karapace uses): schema resolution is not re-implemented here."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from registry.canonical import ParsedSchema
from registry.errors import invalid_compatibility_level


class Level(StrEnum):
    """Confluent's seven compatibility levels."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: object) -> Level:
        """The level named by ``value`` (any case), or RegistryError 42203."""
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        raise invalid_compatibility_level(value)

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """New schema must read data written with the old ones."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old schemas must read data written with the new one."""
        return self.value.startswith(("FORWARD", "FULL"))


DEFAULT_LEVEL = Level.BACKWARD


def reader_writer_problems(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader.avro, writer.avro)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities})) or "incompatible"
    locations = ", ".join(sorted(result.locations))
    messages = "; ".join(sorted(result.messages))
    return [f"{kinds} at {locations}: {messages}" if messages else f"{kinds} at {locations}"]


def pair_problems(level: Level, new: ParsedSchema, old: ParsedSchema) -> list[str]:
    """What ``level`` forbids between ``new`` and one ``old`` schema, each problem prefixed by
    its direction."""
    problems: list[str] = []
    if level.backward:
        problems += [
            f"new schema cannot read old data: {p}" for p in reader_writer_problems(new, old)
        ]
    if level.forward:
        problems += [
            f"old schema cannot read new data: {p}" for p in reader_writer_problems(old, new)
        ]
    return problems


def check(level: Level, new: ParsedSchema, existing: Sequence[ParsedSchema]) -> list[str]:
    """Problems registering ``new`` after ``existing`` (oldest first) under ``level``: against
    the latest only, or every one for the transitive levels. Empty means compatible."""
    if level is Level.NONE or not existing:
        return []
    targets = list(existing) if level.transitive else [existing[-1]]
    problems: list[str] = []
    for old in reversed(targets):
        problems += pair_problems(level, new, old)
    return problems
