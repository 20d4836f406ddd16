"""RFC 7807 problem details: every 4xx the gateway answers names the field and the reason."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from schemas.errors import ContractError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://ctrlplane.io/problems/"


class Problem(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {slug}: {detail}")
        self.status = status
        self.slug = slug
        self.detail = detail
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The problem document."""
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        return body

    @classmethod
    def from_contract(cls, error: ContractError, prefix: str = "") -> Problem:
        """A 422 for input that breaks the contract; ``prefix`` locates it (e.g. ``[2].``)."""
        return cls(422, "invalid-field", error.reason, field=f"{prefix}{error.field}")


def bad_request(field: str, detail: str) -> Problem:
    return Problem(400, "malformed-request", detail, field)


def unprocessable(field: str, detail: str) -> Problem:
    return Problem(422, "invalid-field", detail, field)


def not_found(what: str, ident: str) -> Problem:
    # The same answer whether the thing does not exist or belongs to another tenant.
    return Problem(404, "not-found", f"{what} {ident} not found", "id")
