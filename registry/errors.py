"""Confluent Schema Registry error bodies: ``{"error_code": int, "message": str}``.

Each constructor names what was not found or why input was refused, with the codes Confluent's
registry uses, so clients that branch on ``error_code`` behave the same against ours.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """An HTTP error answer: ``status`` is the HTTP status, ``code`` the Confluent error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body Confluent's registry sends for this error."""
        return {"error_code": self.code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(detail: str = "Schema not found") -> RegistryError:
    return RegistryError(404, 40403, detail)


def subject_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404,
        40404,
        f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
    )


def subject_not_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404,
        40405,
        f"Subject '{subject}' was not deleted first before being permanently deleted",
    )


def version_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted. "
        "Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being "
        "permanently deleted",
    )


def subject_config_not_found(subject: str) -> RegistryError:
    return RegistryError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def subject_mode_not_found(subject: str) -> RegistryError:
    return RegistryError(
        404, 40409, f"Subject '{subject}' does not have subject-level mode configured"
    )


def unauthorized(reason: str = "Unauthorized") -> RegistryError:
    """No valid credentials (HTTP Basic): the answer carries ``WWW-Authenticate``."""
    return RegistryError(401, 40101, reason)


def forbidden(reason: str) -> RegistryError:
    """Valid credentials, but the user's permissions do not cover the operation."""
    return RegistryError(403, 40301, reason)


def incompatible(subject: str, details: list[str]) -> RegistryError:
    return RegistryError(
        409,
        409,
        f"Schema being registered is incompatible with an earlier schema for subject "
        f'"{subject}", details: {details}',
    )


def invalid_schema(reason: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {reason}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. Allowed values are "
        'between [1, 2^31-1] and the string "latest"',
    )


def invalid_compatibility_level(level: object) -> RegistryError:
    return RegistryError(
        422,
        42203,
        f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    )


def invalid_mode(mode: object, supported: str) -> RegistryError:
    return RegistryError(422, 42204, f"Invalid mode {mode!r}. Valid values are {supported}")


def operation_not_permitted(subject: str | None) -> RegistryError:
    """A write while the subject (or, ``subject`` None, the registry) is in a read-only mode."""
    if subject is None:
        return RegistryError(
            422, 42205, "Operation not permitted: the registry is in read-only mode"
        )
    return RegistryError(422, 42205, f"Subject {subject} is in read-only mode")


def unprocessable(field: str, reason: str) -> RegistryError:
    """A request body that is JSON but misses or mistypes ``field``."""
    return RegistryError(422, 422, f"{field}: {reason}")


def bad_request(reason: str) -> RegistryError:
    return RegistryError(400, 400, reason)


def store_error(reason: str) -> RegistryError:
    return RegistryError(500, 50001, f"Error in the backend data store: {reason}")


def operation_timeout(reason: str) -> RegistryError:
    return RegistryError(500, 50002, f"Operation timed out: {reason}")


def forwarding_error(reason: str) -> RegistryError:
    return RegistryError(500, 50003, f"Error while forwarding the request to the writer: {reason}")
