"""Size limits checked where records enter the platform.

An event's JSON size says little about its encoded size: the payload travels as Go-style
escaped JSON, where ``<``, ``>`` and ``&`` take six bytes each, so a 166 KB request body once
became a ~1 MB record. The limit is therefore on the encoded bytes, which every producer
already holds before it sends: checking their length costs nothing.
"""

from __future__ import annotations

from schemas.errors import ContractError

__all__ = ["EventTooLarge", "check_event_size"]


class EventTooLarge(ContractError):
    """An event whose encoding exceeds ``CPEVENTS_MAX_EVENT_BYTES``; nothing of it was sent.

    ``field`` is ``payload`` (the only part of an event that can grow), prefixed with the
    event's position in a batch when there is one.
    """

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(
            field,
            f"the event encodes to {size} bytes, over the limit of {limit} bytes "
            "(CPEVENTS_MAX_EVENT_BYTES; JSON escaping makes <, > and & six bytes each)",
        )
        self.size = size
        self.limit = limit


def check_event_size(value: bytes, limit: int, prefix: str = "") -> None:
    """Raise :class:`EventTooLarge` (naming ``<prefix>payload``) if ``value`` exceeds ``limit``."""
    if len(value) > limit:
        raise EventTooLarge(f"{prefix}payload", len(value), limit)
