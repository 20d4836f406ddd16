"""Errors raised when input breaks the event contract."""

from __future__ import annotations


class ContractError(ValueError):
    """Input that breaks the contract. ``field`` names the offending field, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
