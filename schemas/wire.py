"""The Confluent wire format and the Avro binary primitives, in one place.

A record on the wire is ``0x00``, the writer schema's registry id (4 bytes, big-endian), then
the Avro binary body. In the body a long (and an int) is a zig-zag varint of at most 10 bytes;
a string or bytes value is its length as a long, then its bytes (UTF-8 for a string); a double
is 8 bytes little-endian. Everything that writes or reads those bytes by hand (schemas/serde.py,
schemas/transcode.py, schemas/attempt_records.py, streams/task_bytes.py) uses these functions.

Two kinds of readers, for two kinds of callers:

* ``read_long`` / ``read_string`` / ``read_bytes`` raise ``WireFormatError`` (a ValueError)
  for bytes that are not one value: a decoder of records, which must say what is wrong. Like
  fastavro, a 10-byte varint with bits beyond the 64th is wrapped to 64 bits.
* ``long_at`` / ``string_at`` never raise: they answer a negative position for anything they
  are not certain of (truncated, over 10 bytes, beyond 64 bits, a length out of range). For the
  transcoder, which then leaves the record to the decoder above (and its error).

Compiled with mypyc together with its callers (setup.py), so that they call it natively; it
runs, slower, as plain Python too.
"""

from __future__ import annotations

import struct
from typing import Final

MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5  # magic byte + 4-byte big-endian schema id

_LONG_MIN: Final = -(1 << 63)
_LONG_LIMIT: Final = 1 << 63  # one beyond the largest long
_SMALL_BOUND: Final = (1 << 62) - 1  # what mypyc holds unboxed: -2**62 to 2**62 - 1
_INT_MIN: Final = -(1 << 31)
_INT_LIMIT: Final = 1 << 31
_UINT64_MASK: Final = (1 << 64) - 1
_MAX_VARINT_BYTES: Final = 10
# What long_at answers instead of a position when there is no long that fits 64 bits.
TRUNCATED: Final = -1
TOO_LONG: Final = -2
BEYOND_64_BITS: Final = -3

_DOUBLE: Final = struct.Struct("<d")
# Single-byte varints 0..127 (the zig-zag forms of 0..63 and -1..-64).
_SHORT: Final = tuple(bytes([byte]) for byte in range(0x80))


class WireFormatError(ValueError):
    """Bytes that are not what the wire format says should be there."""


# -- the Confluent header ---------------------------------------------------------------------


def header(schema_id: int) -> bytes:
    """The wire header of ``schema_id``: magic byte, then the id in 4 bytes, big-endian.

    OverflowError if the id does not fit 4 unsigned bytes."""
    return bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")


def schema_id_of(data: bytes) -> int:
    """The schema id in the wire header at the start of ``data``.

    WireFormatError if ``data`` is shorter than a header or its magic byte is not 0."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(
            f"not Confluent wire format: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte "
            "header (magic byte 0, 4-byte schema id)"
        )
    if data[0] != MAGIC_BYTE:
        raise WireFormatError(
            f"not Confluent wire format: magic byte 0x{data[0]:02x}, expected 0x00"
        )
    return int.from_bytes(data[1:HEADER_SIZE], "big")


# -- reading ----------------------------------------------------------------------------------


def long_at(data: bytes, pos: int) -> tuple[int, int]:
    """The Avro long at ``pos`` and the position after it. Never raises: the position is
    negative if there is no long there that fits 64 bits, and says why: TRUNCATED, TOO_LONG
    (over 10 bytes) or BEYOND_64_BITS (a 10th byte over 1; the value is then the long that
    fastavro reads, wrapped to 64 bits)."""
    size = len(data)
    number = 0
    shift = 0
    while True:
        if shift > 63:
            return 0, TOO_LONG
        if pos >= size:
            return 0, TRUNCATED
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if shift > 63 and number > _UINT64_MASK:  # only a 10th byte reaches beyond
        number &= _UINT64_MASK
        return (number >> 1) ^ -(number & 1), BEYOND_64_BITS
    return (number >> 1) ^ -(number & 1), pos


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The Avro long at ``pos`` and the position after it; WireFormatError if there is none.

    Bits beyond the 64th (a 10th byte over 1) are dropped, as fastavro's reader does."""
    number, end = long_at(data, pos)
    if end < 0:
        if end == BEYOND_64_BITS:
            return number, pos + _MAX_VARINT_BYTES
        if end == TOO_LONG:
            raise WireFormatError(f"varint longer than 10 bytes at byte {pos}")
        raise WireFormatError(f"truncated varint at byte {pos} of {len(data)}")
    return number, end


def _length_end(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the length-prefixed value at ``pos``; WireFormatError if out of range."""
    length, start = read_long(data, pos)
    end = start + length
    if length < 0 or end > len(data):
        raise WireFormatError(f"string length {length} out of range")
    return start, end


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """The Avro string at ``pos`` and the position after it.

    WireFormatError for a bad length, UnicodeDecodeError (a ValueError) for bad UTF-8."""
    start, end = _length_end(data, pos)
    return data[start:end].decode("utf-8"), end


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """The Avro bytes value at ``pos`` and the position after it; WireFormatError if bad."""
    start, end = _length_end(data, pos)
    return data[start:end], end


def string_at(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the bytes of the Avro string (or bytes) at ``pos``; end is -1 if there is
    none: no length (see ``long_at``), a negative one or one beyond the data. Never raises."""
    length, start = long_at(data, pos)
    end = start + length
    if start < 0 or length < 0 or end > len(data):
        return 0, -1
    return start, end


# -- writing ----------------------------------------------------------------------------------


def write_long(out: bytearray, number: int) -> None:
    """Append ``number`` as an Avro long; OverflowError if it does not fit 64 bits."""
    # Compiled, the first test compares small ints directly; the bounds of a long do not fit
    # one, and comparing with them costs a call: only numbers beyond 2**62 pay it.
    if not -_SMALL_BOUND < number < _SMALL_BOUND and not _LONG_MIN <= number < _LONG_LIMIT:
        raise OverflowError(f"{number} does not fit an Avro long")
    zigzag = (number << 1) ^ (number >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def write_int(out: bytearray, number: int) -> None:
    """Append ``number`` as an Avro int; OverflowError if it does not fit 32 bits."""
    if not _INT_MIN <= number < _INT_LIMIT:
        raise OverflowError(f"{number} does not fit an Avro int")
    write_long(out, number)


def write_bytes(out: bytearray, value: bytes) -> None:
    """Append ``value`` as Avro bytes (length, then the bytes)."""
    write_long(out, len(value))
    out += value


def write_string(out: bytearray, text: str) -> None:
    """Append ``text`` as an Avro string (length, then UTF-8)."""
    encoded = text.encode("utf-8")
    write_long(out, len(encoded))
    out += encoded


def write_double(out: bytearray, value: float) -> None:
    """Append ``value`` as an Avro double (8 bytes, little-endian)."""
    out += _DOUBLE.pack(value)


def encode_long(number: int) -> bytes:
    """``number`` as an Avro long; OverflowError if it does not fit 64 bits."""
    if 0 <= number < 64:
        return _SHORT[number << 1]
    out = bytearray()
    write_long(out, number)
    return bytes(out)


def encode_string(text: str) -> bytes:
    """``text`` as an Avro string (length, then UTF-8)."""
    data = text.encode("utf-8")
    size = len(data)
    if size < 64:
        return _SHORT[size << 1] + data
    out = bytearray()
    write_long(out, size)
    out += data
    return bytes(out)
