"""Bearer-token authentication and tenant scoping.

Tenant tokens come from ``CPEVENTS_TENANT_TOKENS`` (a JSON object: token -> tenant id; several
tokens may map to one tenant, which allows rotating them); ``CPEVENTS_ADMIN_TOKEN`` sees and
writes every tenant. Tokens are compared in constant time and never echoed.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from pydantic import SecretStr

from producers.gateway.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cpevents"'}


@dataclass(frozen=True)
class Principal:
    """Who is calling: one tenant, or the admin (``tenant_id`` None)."""

    tenant_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def can_see(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id

    def check_write(self, tenant_id: str, field: str = "tenant_id") -> None:
        """Refuse (403, naming ``field``) writing data of another tenant."""
        if not self.can_see(tenant_id):
            raise Problem(
                403,
                "forbidden-tenant",
                f"this token may only write tenant {self.tenant_id!r}",
                field,
            )

    def scope(self, requested: str | None, field: str = "tenant_id") -> str | None:
        """The tenant a read or write is limited to: a tenant token's own, or the admin's choice."""
        if requested is not None:
            self.check_write(requested, field)
            return requested
        return self.tenant_id


class TokenAuth:
    """Maps bearer tokens to principals."""

    def __init__(self, tenant_tokens: dict[str, str], admin_token: str | None) -> None:
        self._tenant_tokens = [(token.encode(), tenant) for token, tenant in tenant_tokens.items()]
        self._admin = admin_token.encode() if admin_token else None

    @classmethod
    def from_settings(
        cls, tenant_tokens: SecretStr | None, admin_token: SecretStr | None
    ) -> TokenAuth:
        """Parse ``CPEVENTS_TENANT_TOKENS``; errors name the variable, never a token."""
        mapping: dict[str, str] = {}
        if tenant_tokens is not None and tenant_tokens.get_secret_value().strip():
            try:
                parsed = json.loads(tenant_tokens.get_secret_value())
            except ValueError:
                raise ValueError("CPEVENTS_TENANT_TOKENS: must be a JSON object") from None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) and v.strip()
                for k, v in parsed.items()
            ):
                raise ValueError(
                    "CPEVENTS_TENANT_TOKENS: must map non-empty token strings to tenant ids"
                )
            mapping = parsed
        admin = admin_token.get_secret_value() if admin_token is not None else None
        return cls(mapping, admin or None)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; 401 naming the header if none."""
        if not authorization:
            raise Problem(
                401, "unauthenticated", "a bearer token is required", "Authorization", _CHALLENGE
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401,
                "unauthenticated",
                "expected 'Authorization: Bearer <token>'",
                "Authorization",
                _CHALLENGE,
            )
        presented = token.encode()
        found: Principal | None = None
        # Compare against every token (no early exit) so timing says nothing about which matched.
        if self._admin is not None and hmac.compare_digest(presented, self._admin):
            found = Principal(None)
        for candidate, tenant in self._tenant_tokens:
            if hmac.compare_digest(presented, candidate) and found is None:
                found = Principal(tenant)
        if found is None:
            raise Problem(401, "unauthenticated", "unknown token", "Authorization", _CHALLENGE)
        return found
