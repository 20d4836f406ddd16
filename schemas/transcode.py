"""Avro ``Event`` bytes straight to Ctrl Plane's JSON form, for the records that allow it.

Replay prints every event it reads and delivery posts every event it sends, both in the JSON
form. Going through ``Event`` (decode every field, parse the payload text, build the object,
marshal it again) costs several times what Kafka costs to hand over the record. Most records
need none of that: their strings need no JSON escaping and their payload text is already in
Go's form, because our producers and Go's ``encoding/json`` both write it that way. Those
records are transcoded here in one pass over the bytes.

The pass is deliberately conservative: it answers None for anything it is not certain of
(escapes, floats, whitespace, unsorted keys, non-catalog ids, malformed bytes), and the caller
then takes the full path (``Event.from_avro`` + ``Event.to_json``), which also produces the
exact error. So this module never decides that a record is bad and never renders a record
differently: a property test compares it with the full path on generated and corrupted records.

Only valid for records written with our own Event schema (same field layout). Compiled with
mypyc when the package is installed (see setup.py); it runs, slower, as plain Python too.
"""

from __future__ import annotations

from typing import Final

from schemas.event_types import EventType
from schemas.wire import HEADER_SIZE, long_at, string_at

# Byte classes inside a JSON string: 1 = written as is by Go and by our encoder; 2 = non-ASCII
# (part of a UTF-8 sequence, checked as a whole); 0 = needs escaping or ends the string.
_UNSAFE_ASCII: Final = b'"\\<>&'


def _string_classes() -> bytes:
    classes = bytearray(256)
    for byte in range(0x20, 0x7F):
        classes[byte] = 0 if byte in _UNSAFE_ASCII else 1
    for byte in range(0x80, 0x100):
        classes[byte] = 2
    return bytes(classes)


_STRING_CLASS: Final = _string_classes()
# TypeID suffix: 26 Crockford base32 digits (lowercase, no i, l, o, u), the first one 0-7.
_CROCKFORD: Final = b"0123456789abcdefghjkmnpqrstvwxyz"
_SUFFIX_FIRST_MAX: Final = 0x37  # "7"


def _crockford_table() -> bytes:
    # A byte-indexed table: compiled, `table[byte]` is a native load where `byte in _CROCKFORD`
    # is a generic containment call on a boxed int (it was a quarter of a record's cost).
    table = bytearray(256)
    for byte in _CROCKFORD:
        table[byte] = 1
    return bytes(table)


_IS_CROCKFORD: Final = _crockford_table()
_TYPEID_SUFFIX_LENGTH: Final = 26
_EVENT_PREFIX: Final = b"evt_"
_INSTANCE_PREFIX: Final = b"inst_"
# Go escapes U+2028 and U+2029 (in UTF-8: E2 80 A8 and E2 80 A9) even inside strings.
_LINE_SEPARATOR: Final = b"\xe2\x80\xa8"
_PARAGRAPH_SEPARATOR: Final = b"\xe2\x80\xa9"
_MAX_DEPTH: Final = 64
_MAX_INTEGER_DIGITS: Final = 18
# What datetime can hold: 0001-01-01T00:00:00 to 9999-12-31T23:59:59.999999, in epoch micros.
_MIN_MICROS: Final = -62_135_596_800_000_000
_MAX_MICROS: Final = 253_402_300_799_999_999

_SPACE: Final = 0x20
_QUOTE: Final = 0x22
_BACKSLASH: Final = 0x5C
_COMMA: Final = 0x2C
_COLON: Final = 0x3A
_MINUS: Final = 0x2D
_ZERO: Final = 0x30
_NINE: Final = 0x39
_OPEN_OBJECT: Final = 0x7B
_CLOSE_OBJECT: Final = 0x7D
_OPEN_ARRAY: Final = 0x5B
_CLOSE_ARRAY: Final = 0x5D

# "00" to "99": formatting a timestamp by table is several times cheaper than f-strings.
_TWO_DIGITS: Final = [b"%02d" % number for number in range(100)]
# "000" to "999", and the same without trailing zeros: a fraction of a second is two of them.
_THREE_DIGITS: Final = [b"%03d" % number for number in range(1000)]
_THREE_DIGITS_TRIMMED: Final = [digits.rstrip(b"0") for digits in _THREE_DIGITS]


def _type_texts() -> dict[bytes, tuple[str, bytes]]:
    # Each catalog type's text, and the JSON between the id and the tenant id's value that it
    # makes: one part to join instead of three.
    return {
        str(t).encode(): (str(t), b'","type":"' + str(t).encode() + b'","tenant_id":"')
        for t in EventType
    }


_TYPES: Final = _type_texts()


class EventJson:
    """One event in Ctrl Plane's JSON form, with the fields replay and delivery need."""

    json: bytes
    id: str
    type: str
    tenant_id: str
    instance_id: str | None
    end: int  # where the Avro record ended in the input
    # The event's own timestamp (epoch micros, UTC); 0 when the maker did not give it.
    timestamp_micros: int

    def __init__(
        self,
        json: bytes,
        id: str,
        type: str,
        tenant_id: str,
        instance_id: str | None,
        end: int,
        timestamp_micros: int = 0,
    ) -> None:
        self.json = json
        self.id = id
        self.type = type
        self.tenant_id = tenant_id
        self.instance_id = instance_id
        self.end = end
        self.timestamp_micros = timestamp_micros


class DeliveryTaskJson:
    """A delivery task whose event is in its JSON form (what the delivery worker posts)."""

    id: str
    webhook_id: str
    tenant_id: str
    url: str
    event: EventJson
    created_at_micros: int  # since the epoch, UTC; within datetime's years 1-9999
    end: int

    def __init__(
        self,
        id: str,
        webhook_id: str,
        tenant_id: str,
        url: str,
        event: EventJson,
        created_at_micros: int,
        end: int,
    ) -> None:
        self.id = id
        self.webhook_id = webhook_id
        self.tenant_id = tenant_id
        self.url = url
        self.event = event
        self.created_at_micros = created_at_micros
        self.end = end


def framed_event_json(data: bytes | None, own_headers: set[bytes]) -> EventJson | None:
    """``event_json`` of a whole Confluent-framed record whose wire header (magic byte and
    schema id) is one of ``own_headers``, those written with exactly our Event schema; None if
    it is not, or needs the full path. One native call for what a record-by-record caller
    (replay) otherwise checks in three Python ones."""
    if not data or data[:HEADER_SIZE] not in own_headers:
        return None
    event = event_json(data, HEADER_SIZE)
    if event is None or event.end != len(data):
        return None  # trailing bytes: the full path refuses them
    return event


def delivery_task_json(data: bytes, start: int) -> DeliveryTaskJson | None:
    """The DeliveryTask record at ``data[start:]``, its event as JSON; None: the full path."""
    texts: list[str] = []
    pos = start
    for _ in range(4):  # id, webhook_id, tenant_id, url
        begin, pos = string_at(data, pos)
        if pos < 0:
            return None
        try:
            texts.append(data[begin:pos].decode("utf-8"))
        except UnicodeDecodeError:
            return None
    event = event_json(data, pos)
    if event is None:
        return None
    created_at, pos = long_at(data, event.end)
    if pos < 0 or not _MIN_MICROS <= created_at <= _MAX_MICROS:
        return None
    return DeliveryTaskJson(texts[0], texts[1], texts[2], texts[3], event, created_at, pos)


def event_json(data: bytes, start: int) -> EventJson | None:
    """The Event record at ``data[start:]`` as JSON, or None if it needs the full path."""
    # id: an evt_ TypeID
    begin, pos = _typeid_at(data, start, _EVENT_PREFIX)
    if pos < 0:
        return None
    event_id = data[begin:pos]
    # type: one of the catalog's
    begin, pos = string_at(data, pos)
    if pos < 0:
        return None
    known = _TYPES.get(data[begin:pos])
    if known is None:
        return None
    event_type, type_json = known
    # tenant_id: non-empty, and not only spaces (the contract strips it to check)
    begin, pos = string_at(data, pos)
    if pos < 0:
        return None
    tenant = data[begin:pos]
    if not _plain_tenant(tenant):
        return None
    # instance_id: null or an inst_ TypeID
    begin, pos = _optional_typeid_at(data, pos, _INSTANCE_PREFIX)
    if pos < 0:
        return None
    instance = data[begin:pos] if begin >= 0 else None
    # actor_id: null or any string (here: one that needs no escaping); then the payload
    actor, payload, pos = _actor_and_payload(data, pos)
    if pos < 0:
        return None
    micros, pos = long_at(data, pos)
    if pos < 0:
        return None
    second = micros // 1_000_000
    date_time = _date_time_of(second)
    if not date_time:  # out of datetime's range
        return None
    return EventJson(
        _render(
            event_id,
            type_json,
            tenant,
            instance,
            actor,
            payload,
            date_time,
            micros - second * 1_000_000,
        ),
        event_id.decode("ascii"),
        event_type,
        tenant.decode("ascii"),
        None if instance is None else instance.decode("ascii"),
        pos,
        micros,
    )


def _render(
    event_id: bytes,
    type_json: bytes,
    tenant: bytes,
    instance: bytes | None,
    actor: bytes,
    payload: bytes,
    date_time: bytes,
    fraction: int,
) -> bytes:
    """The event's JSON: Go's field order, optional fields left out when empty; joined once
    from the record's own slices and constant parts (see ``_TYPES``, ``_add_fraction``)."""
    parts = [b'{"id":"', event_id, type_json, tenant, b'"']
    if instance is not None:
        parts += (b',"instance_id":"', instance, b'"')
    if actor:
        parts += (b',"actor_id":"', actor, b'"')
    if payload and payload != b"{}":
        parts += (b',"payload":', payload)
    parts += (b',"timestamp":"', date_time)
    _add_fraction(parts, fraction)
    parts.append(b'Z"}')
    return b"".join(parts)


def _typeid_at(data: bytes, pos: int, prefix: bytes) -> tuple[int, int]:
    """``string_at``, for a TypeID with ``prefix``; end -1 otherwise."""
    begin, end = string_at(data, pos)
    if end < 0 or not _is_typeid(data, begin, end, prefix):
        return 0, -1
    return begin, end


def _optional_typeid_at(data: bytes, pos: int, prefix: bytes) -> tuple[int, int]:
    """``_optional_string``, for null or a TypeID with ``prefix``; end -1 otherwise."""
    begin, end = _optional_string(data, pos)
    if end < 0 or (begin >= 0 and not _is_typeid(data, begin, end, prefix)):
        return 0, -1
    return begin, end


def _actor_and_payload(data: bytes, pos: int) -> tuple[bytes, bytes, int]:
    """The actor id (empty for null) and the payload text at ``pos``, and the position after;
    -1 unless the actor needs no escaping and the payload is an object already in Go's form
    (empty text means {})."""
    begin, pos = _optional_string(data, pos)
    if pos < 0:
        return b"", b"", -1
    actor = data[begin:pos] if begin >= 0 else b""
    if not _plain_ascii(actor):
        return b"", b"", -1
    begin, pos = string_at(data, pos)
    if pos < 0:
        return b"", b"", -1
    payload = data[begin:pos]
    if payload and not _canonical_object(payload):
        return b"", b"", -1
    return actor, payload, pos


def _optional_string(data: bytes, pos: int) -> tuple[int, int]:
    """``string_at`` of a ["null", "string"] union; start is -1 for null."""
    if pos >= len(data):
        return 0, -1
    branch = data[pos]
    if branch == 0:
        return -1, pos + 1
    if branch != 2:
        return 0, -1
    return string_at(data, pos + 1)


def _is_typeid(data: bytes, start: int, end: int, prefix: bytes) -> bool:
    prefix_length = len(prefix)
    if end - start != prefix_length + _TYPEID_SUFFIX_LENGTH:
        return False
    for index in range(prefix_length):
        if data[start + index] != prefix[index]:
            return False
    pos = start + prefix_length
    if not _ZERO <= data[pos] <= _SUFFIX_FIRST_MAX:
        return False
    table = _IS_CROCKFORD
    return all(table[data[index]] for index in range(pos + 1, end))


def _plain_ascii(text: bytes) -> bool:
    return all(_STRING_CLASS[byte] == 1 for byte in text)


def _plain_tenant(text: bytes) -> bool:
    """A tenant id that needs no escaping and is not empty or only spaces (the contract strips
    it to check): one pass, where ``strip`` was a method call and a copy."""
    blank = True
    for byte in text:
        if _STRING_CLASS[byte] != 1:
            return False
        if byte != _SPACE:
            blank = False
    return not blank


def _canonical_object(text: bytes) -> bool:
    """Whether ``text`` is a JSON object exactly as Go (and our encoder) would write it."""
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if _LINE_SEPARATOR in text or _PARAGRAPH_SEPARATOR in text:
            return False
    if text[0] != _OPEN_OBJECT:
        return False
    return _value(text, 0, 0) == len(text)


def _value(text: bytes, pos: int, depth: int) -> int:
    """The position after the canonical JSON value at ``pos``, or -1."""
    size = len(text)
    if pos >= size or depth > _MAX_DEPTH:
        return -1
    first = text[pos]
    if first == _QUOTE:
        return _string_end(text, pos)
    if first == _OPEN_OBJECT:
        return _object_end(text, pos, depth + 1)
    if first == _OPEN_ARRAY:
        return _array_end(text, pos, depth + 1)
    if first == _MINUS or _ZERO <= first <= _NINE:
        return _integer_end(text, pos)
    for literal in (b"true", b"false", b"null"):
        if text.startswith(literal, pos):
            return pos + len(literal)
    return -1


def _string_end(text: bytes, pos: int) -> int:
    """After a string that needs no escaping (non-ASCII was checked as UTF-8 by the caller)."""
    size = len(text)
    pos += 1
    while pos < size:
        byte = text[pos]
        if byte == _QUOTE:
            return pos + 1
        if _STRING_CLASS[byte] == 0:
            return -1  # an escape, a control character or an HTML character
        pos += 1
    return -1


def _integer_end(text: bytes, pos: int) -> int:
    """After an integer in its shortest form; floats are left to the full path."""
    size = len(text)
    start = pos
    if text[pos] == _MINUS:
        pos += 1
    if pos >= size:
        return -1
    if text[pos] == _ZERO:
        pos += 1
        if pos - start == 2:
            return -1  # -0 reads as 0
    else:
        digits = pos
        while pos < size and _ZERO <= text[pos] <= _NINE:
            pos += 1
        # Python refuses to parse very long integers (int_max_str_digits); keep well clear.
        if pos == digits or pos - digits > _MAX_INTEGER_DIGITS:
            return -1
    if pos < size and text[pos] in b".eE0123456789":
        return -1
    return pos


def _object_end(text: bytes, pos: int, depth: int) -> int:
    size = len(text)
    pos += 1
    if pos < size and text[pos] == _CLOSE_OBJECT:
        return pos + 1
    previous = b""
    first = True
    while pos < size:
        key_end = _string_end(text, pos) if text[pos] == _QUOTE else -1
        if key_end < 0:
            return -1
        key = text[pos + 1 : key_end - 1]
        # Sorted, no duplicates: UTF-8 byte order is code point order, what Go and we sort by.
        if not first and key <= previous:
            return -1
        first = False
        previous = key
        pos = key_end
        if pos >= size or text[pos] != _COLON:
            return -1
        pos = _value(text, pos + 1, depth)
        if pos < 0 or pos >= size:
            return -1
        if text[pos] == _CLOSE_OBJECT:
            return pos + 1
        if text[pos] != _COMMA:
            return -1
        pos += 1
    return -1


def _array_end(text: bytes, pos: int, depth: int) -> int:
    size = len(text)
    pos += 1
    if pos < size and text[pos] == _CLOSE_ARRAY:
        return pos + 1
    while pos < size:
        pos = _value(text, pos, depth)
        if pos < 0 or pos >= size:
            return -1
        if text[pos] == _CLOSE_ARRAY:
            return pos + 1
        if text[pos] != _COMMA:
            return -1
        pos += 1
    return -1


def _add_fraction(parts: list[bytes], fraction: int) -> None:
    """Append Go's form of ``fraction`` (microseconds, 0-999999): nothing for 0, else a dot
    and the digits without trailing zeros. From tables: no text is formatted per event."""
    if not fraction:
        return
    millis = fraction // 1000
    rest = fraction - millis * 1000
    if rest:
        parts += (b".", _THREE_DIGITS[millis], _THREE_DIGITS_TRIMMED[rest])
    else:
        parts += (b".", _THREE_DIGITS_TRIMMED[millis])


def _date_time_of(second: int) -> bytes:
    """``_date_time(second)``, through a one-entry cache: replays and bursts bring many events
    of the same second."""
    global _last_second
    cached_second, date_time = _last_second
    if second != cached_second:
        date_time = _date_time(second)
        _last_second = (second, date_time)
    return date_time


# (second since the epoch, its "YYYY-MM-DDTHH:MM:SS"): one tuple, so that threads sharing the
# module only ever see a matching pair.
_last_second: tuple[int, bytes] = (0, b"1970-01-01T00:00:00")


def _date_time(second: int) -> bytes:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch; empty outside years 1-9999."""
    days = second // 86_400
    seconds = second - days * 86_400
    # Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    shifted = days + 719_468
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    if year < 1 or year > 9999:
        return b""
    two = _TWO_DIGITS
    return b"".join(
        [
            two[year // 100],
            two[year % 100],
            b"-",
            two[month],
            b"-",
            two[day],
            b"T",
            two[seconds // 3600],
            b":",
            two[seconds // 60 % 60],
            b":",
            two[seconds % 60],
        ]
    )
