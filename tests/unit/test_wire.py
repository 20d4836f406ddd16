"""The wire-format primitives: Confluent header, Avro longs, strings, bytes and doubles.

Encodings are compared with fastavro's byte for byte; readers are checked on round trips and on
edge values, and refuse truncated, overlong or out-of-range input with a clear error. Both the
compiled module (when installed with mypyc) and its plain-Python source are checked.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

import schemas
from schemas import attempt_records, transcode, wire

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


def plain_module(name: str, plain: dict[str, ModuleType] | None = None) -> ModuleType:
    """schemas/<name>.py run by the interpreter, even when a compiled build is installed; while
    it is loaded, its imports of ``schemas.<key>`` get the modules in ``plain`` instead."""
    source = Path(schemas.__file__).parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"plain_{name}", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    swapped = {f"schemas.{key}": value for key, value in (plain or {}).items()}
    saved = {key: sys.modules[key] for key in swapped if key in sys.modules}
    sys.modules.update(swapped)
    try:
        spec.loader.exec_module(module)
    finally:
        for key in swapped:
            if key in saved:
                sys.modules[key] = saved[key]
            else:
                del sys.modules[key]
    return module


PLAIN_WIRE = plain_module("wire")
WIRES = [pytest.param(wire, id="installed"), pytest.param(PLAIN_WIRE, id="plain")]


def fastavro_bytes(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def fastavro_read(schema: Any, data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), schema, None)


def test_the_group_is_compiled_together() -> None:
    # setup.py compiles the wire module with its callers, so that they call it natively.
    compiled = [m.__file__ is not None and m.__file__.endswith(".so") for m in (wire, transcode)]
    assert compiled[0] == compiled[1] == attempt_records.__file__.endswith(".so")


# -- the Confluent header -------------------------------------------------------------------------


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("schema_id", [0, 1, 255, 256, 100_001, 2**31, 2**32 - 1])
def test_header_round_trip(w: ModuleType, schema_id: int) -> None:
    header = w.header(schema_id)
    assert header == b"\x00" + schema_id.to_bytes(4, "big")
    assert len(header) == w.HEADER_SIZE == 5
    assert w.schema_id_of(header) == schema_id
    assert w.schema_id_of(header + b"\x02body") == schema_id


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("schema_id", [-1, 2**32])
def test_header_of_an_id_beyond_4_bytes_is_refused(w: ModuleType, schema_id: int) -> None:
    with pytest.raises(OverflowError):
        w.header(schema_id)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("data", [b"\x01\x00\x00\x00\x01", b"{}\x00\x00\x00", b"\xff" * 9])
def test_a_bad_magic_byte_is_refused(w: ModuleType, data: bytes) -> None:
    with pytest.raises(w.WireFormatError, match=f"magic byte 0x{data[0]:02x}, expected 0x00"):
        w.schema_id_of(data)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("size", range(5))
def test_a_truncated_header_is_refused(w: ModuleType, size: int) -> None:
    with pytest.raises(w.WireFormatError, match=f"{size} bytes, shorter than the 5-byte header"):
        w.schema_id_of(b"\x00\x00\x00\x00"[:size])
    assert issubclass(w.WireFormatError, ValueError)


# -- longs and ints -------------------------------------------------------------------------------

EDGE_LONGS = [0, -1, 1, 63, -64, 64, -65, 127, 128, 2**31 - 1, -(2**31), 2**31, LONG_MAX, LONG_MIN]
EDGE_LONGS += [LONG_MAX - 1, LONG_MIN + 1, 2**56, -(2**56) - 1]
EDGE_LONGS += [2**62 - 1, 2**62, -(2**62), -(2**62) - 1]  # the edges of mypyc's unboxed ints


def assert_long_round_trip(w: ModuleType, value: int) -> None:
    expected = fastavro_bytes("long", value)
    assert w.encode_long(value) == expected
    out = bytearray(b"x")
    w.write_long(out, value)
    assert out == b"x" + expected
    framed = b"ab" + expected + b"\x02"
    assert w.read_long(framed, 2) == (value, 2 + len(expected))
    assert w.long_at(framed, 2) == (value, 2 + len(expected))
    assert len(expected) <= 10


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("value", EDGE_LONGS)
def test_edge_longs_round_trip_as_fastavro_writes_them(w: ModuleType, value: int) -> None:
    assert_long_round_trip(w, value)


@given(st.integers(LONG_MIN, LONG_MAX))
def test_any_long_round_trips_as_fastavro_writes_it(value: int) -> None:
    assert_long_round_trip(wire, value)
    assert_long_round_trip(PLAIN_WIRE, value)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("value", [LONG_MAX + 1, LONG_MIN - 1, 2**64, -(2**70)])
def test_longs_beyond_64_bits_are_refused(w: ModuleType, value: int) -> None:
    with pytest.raises(OverflowError, match="does not fit an Avro long"):
        w.encode_long(value)
    with pytest.raises(OverflowError, match="does not fit an Avro long"):
        w.write_long(bytearray(), value)


@pytest.mark.parametrize("w", WIRES)
def test_ints_are_longs_within_32_bits(w: ModuleType) -> None:
    for value in (0, -1, 2**31 - 1, -(2**31)):
        out = bytearray()
        w.write_int(out, value)
        assert out == fastavro_bytes("int", value)
    for value in (2**31, -(2**31) - 1):
        with pytest.raises(OverflowError, match="does not fit an Avro int"):
            w.write_int(bytearray(), value)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80" * 9])
def test_a_truncated_varint_is_refused(w: ModuleType, data: bytes) -> None:
    with pytest.raises(w.WireFormatError, match=f"truncated varint at byte 1 of {len(data) + 1}"):
        w.read_long(b"z" + data, 1)
    assert w.long_at(b"z" + data, 1) == (0, w.TRUNCATED)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("data", [b"\x80" * 10 + b"\x00", b"\xff" * 10, b"\xff" * 11 + b"\x01"])
def test_a_varint_over_10_bytes_is_refused(w: ModuleType, data: bytes) -> None:
    with pytest.raises(w.WireFormatError, match="varint longer than 10 bytes at byte 0"):
        w.read_long(data, 0)
    assert w.long_at(data, 0) == (0, w.TOO_LONG)


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("last", [0x02, 0x03, 0x7F])
def test_a_10th_byte_beyond_64_bits(w: ModuleType, last: int) -> None:
    # read_long drops the extra bits as fastavro does; long_at, which never guesses, declines.
    data = b"\xff" * 9 + bytes([last]) + b"\x02"
    wrapped = fastavro_read("long", data)
    assert w.read_long(data, 0) == (wrapped, 10)
    assert w.long_at(data, 0) == (wrapped, w.BEYOND_64_BITS)
    assert w.read_long(b"\xff" * 9 + b"\x01", 0) == (LONG_MIN, 10)  # 64 bits: still a long


# -- strings, bytes, doubles ----------------------------------------------------------------------

TEXTS = [
    "",
    "a",
    "x" * 63,
    "x" * 64,
    "ü" * 32,
    "ü" * 31 + "x",
    "€" * 1000,
    "\x00\u2028",
    "y" * 70_000,
]


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("text", TEXTS, ids=lambda text: f"{len(text.encode())}B")
def test_strings_round_trip_as_fastavro_writes_them(w: ModuleType, text: str) -> None:
    expected = fastavro_bytes("string", text)
    assert w.encode_string(text) == expected
    out = bytearray(b"x")
    w.write_string(out, text)
    assert out == b"x" + expected
    framed = b"x" + expected + b"\x00"
    end = 1 + len(expected)
    assert w.read_string(framed, 1) == (text, end)
    assert w.string_at(framed, 1) == (end - len(text.encode()), end)
    assert w.read_bytes(framed, 1) == (text.encode(), end)
    out = bytearray()
    w.write_bytes(out, text.encode())
    assert out == fastavro_bytes("bytes", text.encode())


@given(st.text())
def test_any_string_round_trips_as_fastavro_writes_it(text: str) -> None:
    expected = fastavro_bytes("string", text)
    for w in (wire, PLAIN_WIRE):
        assert w.encode_string(text) == expected
        assert w.read_string(expected, 0) == (text, len(expected))


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize(
    ("data", "length"),
    [(b"\x02", 1), (b"\x06ab", 3), (b"\x01", -1), (b"\x03abc", -2), (b"\x80\x01" + b"a" * 63, 64)],
)
def test_string_lengths_out_of_range_are_refused(w: ModuleType, data: bytes, length: int) -> None:
    with pytest.raises(w.WireFormatError, match=f"string length {length} out of range"):
        w.read_string(data, 0)
    with pytest.raises(w.WireFormatError, match=f"string length {length} out of range"):
        w.read_bytes(data, 0)
    assert w.string_at(data, 0) == (0, -1)


@pytest.mark.parametrize("w", WIRES)
def test_a_string_whose_length_is_truncated_is_refused(w: ModuleType) -> None:
    with pytest.raises(w.WireFormatError, match="truncated varint"):
        w.read_string(b"\x80", 0)
    assert w.string_at(b"\x80", 0) == (0, -1)
    assert w.string_at(b"\xff" * 9 + b"\x02", 0) == (0, -1)  # a length beyond 64 bits


@pytest.mark.parametrize("w", WIRES)
def test_bad_utf8_is_a_value_error(w: ModuleType) -> None:
    with pytest.raises(UnicodeDecodeError):
        w.read_string(b"\x04\xc3\x28", 0)
    assert w.read_bytes(b"\x04\xc3\x28", 0) == (b"\xc3\x28", 3)
    assert w.string_at(b"\x04\xc3\x28", 0) == (1, 3)  # bytes only: UTF-8 is the caller's


@pytest.mark.parametrize("w", WIRES)
@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, -1e308, 5e-324, float("inf"), 12.25])
def test_doubles_as_fastavro_writes_them(w: ModuleType, value: float) -> None:
    out = bytearray()
    w.write_double(out, value)
    assert out == fastavro_bytes("double", value)
