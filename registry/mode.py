"""Confluent's registry modes: whether writes are accepted, globally or per subject.

``READONLY`` refuses writes to a subject (or, set globally, to every subject without a mode of
its own); ``READONLY_OVERRIDE`` set globally refuses writes everywhere, whatever a subject's own
mode says (the operator's lock). ``IMPORT`` (registering schemas under given ids) is not
supported by this registry and is refused like any unknown mode (42204).
"""

from __future__ import annotations

from enum import StrEnum

from registry.errors import invalid_mode


class Mode(StrEnum):
    """The modes this registry serves."""

    READWRITE = "READWRITE"
    READONLY = "READONLY"
    READONLY_OVERRIDE = "READONLY_OVERRIDE"

    @classmethod
    def parse(cls, value: object) -> Mode:
        """The mode named by ``value`` (any case), or RegistryError 42204."""
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        raise invalid_mode(value, ", ".join(m.value for m in cls))

    @property
    def read_only(self) -> bool:
        return self is not Mode.READWRITE


DEFAULT_MODE = Mode.READWRITE
