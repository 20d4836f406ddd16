"""TypeID identifiers (``prefix_<base32 uuid>``), as Ctrl Plane's ``id`` package uses them."""

from __future__ import annotations

import hashlib
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
    duplicates are recognisable downstream, hence a name-based (hash) UUID: the TypeID of
    ``uuid5(namespace, "<event_id>/<webhook_id>")``. Computed here without ``uuid.UUID`` and the
    typeid library (the router derives one id per task; they cost ~4x more); a unit test keeps it
    equal to ``TypeID.from_uuid(prefix="deli", suffix=uuid.uuid5(...))``.
    """
    digest = hashlib.sha1(_DELIVERY_NAMESPACE_BYTES + f"{event_id}/{webhook_id}".encode())
    value = int.from_bytes(digest.digest()[:16], "big")
    value = (value & _UUID5_CLEAR) | _UUID5_SET  # version 5, RFC 4122 variant (as uuid.uuid5)
    # TypeID's suffix is the 128-bit value as 26 Crockford base32 digits (130 bits, two leading
    # zero bits), produced here two digits (10 bits) per table lookup.
    return _DELIVERY_PREFIX + "".join([_DIGIT_PAIRS[(value >> s) & 0x3FF] for s in _PAIR_SHIFTS])


_DELIVERY_NAMESPACE_BYTES: Final = _DELIVERY_NAMESPACE.bytes
_DELIVERY_PREFIX: Final = f"{DELIVERY}_"
_UUID5_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET: Final = (5 << 76) | (0x8000 << 48)
_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
_DIGIT_PAIRS: Final = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_PAIR_SHIFTS: Final = tuple(range(120, -1, -10))
