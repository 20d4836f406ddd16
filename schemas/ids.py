"""TypeID identifiers (``prefix_<base32 uuid>``), as Ctrl Plane's ``id`` package uses them."""

from __future__ import annotations

import re
import uuid
from typing import Final

from typeid import TypeID

from schemas.errors import ContractError

EVENT: Final = "evt"
INSTANCE: Final = "inst"
WEBHOOK: Final = "hook"
DELIVERY: Final = "deli"

# Fixed namespace for name-based delivery ids; changing it would change every delivery id.
_DELIVERY_NAMESPACE: Final = uuid.UUID("6f1c1f0e-5d2a-4c38-9a53-2f0b7f3c9e11")


def new_id(prefix: str) -> str:
    """A fresh, time-sortable TypeID with ``prefix``."""
    return str(TypeID(prefix=prefix))


# TypeID text: a lowercase prefix, "_", then 26 Crockford base32 characters whose first is 0-7
# (so the value fits 128 bits). Checked with a regex first because ids are validated on every
# decoded record; the library is only consulted to explain a failure.
_TYPEID = re.compile(r"([a-z](?:[a-z_]{0,61}[a-z])?)_[0-7][0-9a-hjkmnp-tv-z]{25}")


def check_id(value: str, prefix: str, field: str) -> str:
    """Return ``value`` if it is a TypeID with ``prefix``; raise ContractError naming ``field``."""
    if not isinstance(value, str) or not value:
        raise ContractError(field, f"must be a TypeID with prefix '{prefix}_'")
    match = _TYPEID.fullmatch(value)
    if match is not None and match.group(1) == prefix:
        return value
    try:
        parsed = TypeID.from_string(value)
    except Exception as exc:  # typeid raises several exception types for malformed input
        raise ContractError(field, f"is not a valid TypeID ({exc})") from None
    if parsed.prefix != prefix:
        raise ContractError(field, f"must have prefix '{prefix}_', got '{parsed.prefix}_'")
    return value


def delivery_id(event_id: str, webhook_id: str) -> str:
    """The delivery id of (event, webhook): the same inputs always give the same id.

    Reprocessing an event after a crash must yield the same delivery ids so that
    duplicates are recognisable downstream, hence a name-based (hash) UUID.
    """
    derived = uuid.uuid5(_DELIVERY_NAMESPACE, f"{event_id}/{webhook_id}")
    return str(TypeID.from_uuid(prefix=DELIVERY, suffix=derived))  # type: ignore[arg-type]
