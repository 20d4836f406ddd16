"""Custom headers of a webhook (``"headers": {"X-Api-Key": "…"}``): the rules for names and
values. Pure; the values are secrets, so no error message ever quotes one.

Refused names are those the delivery worker owns or HTTP gives a meaning of its own: the
Standard Webhooks ``webhook-*`` headers, ``content-type``, ``content-length``, ``host``,
``user-agent``, the trace context (``traceparent``, ``tracestate``) and the hop-by-hop headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from schemas.errors import ContractError

MAX_HEADERS = 10
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 1024
MAX_TOTAL_BYTES = 4096  # every name and value together

RESERVED_PREFIXES = ("webhook-",)
RESERVED_NAMES = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "traceparent",
        "tracestate",
        # hop-by-hop (RFC 9110 section 7.6.1) and their non-standard relatives
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_name(name: Any, path: str = "headers") -> str:
    """``name`` if it is an HTTP field name we may send, else ContractError naming the path."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ContractError(path, "must be an HTTP header name (letters, digits, - and the like)")
    if len(name) > MAX_NAME_LENGTH:
        raise ContractError(path, f"must be at most {MAX_NAME_LENGTH} characters")
    lowered = name.lower()
    if lowered in RESERVED_NAMES or lowered.startswith(RESERVED_PREFIXES):
        raise ContractError(path, f"{name} is reserved (set by the delivery worker or by HTTP)")
    return name


def check_headers(value: Any, path: str = "headers") -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of a ``headers`` object; ContractError naming ``headers.<name>``
    and the reason (never the value)."""
    if not isinstance(value, Mapping):
        raise ContractError(path, "must be a JSON object of header names to string values")
    if len(value) > MAX_HEADERS:
        raise ContractError(path, f"at most {MAX_HEADERS} headers")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for name, text in value.items():
        where = f"{path}.{name}"
        check_name(name, where)
        if name.lower() in seen:
            raise ContractError(where, "is given twice (header names ignore case)")
        seen.add(name.lower())
        if not isinstance(text, str) or not text:
            raise ContractError(where, "must be a non-empty string")
        if len(text) > MAX_VALUE_LENGTH:
            raise ContractError(where, f"must be at most {MAX_VALUE_LENGTH} characters")
        if not all(ch == "\t" or " " <= ch <= "~" for ch in text):
            raise ContractError(where, "must be printable ASCII (no line breaks)")
        total += len(name) + len(text)
        pairs.append((name, text))
    if total > MAX_TOTAL_BYTES:
        raise ContractError(path, f"names and values total at most {MAX_TOTAL_BYTES} bytes")
    return tuple(pairs)
