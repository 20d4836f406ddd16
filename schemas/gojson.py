"""JSON text exactly as Go's ``encoding/json`` writes it.

Ctrl Plane is written in Go; webhook bodies, HTTP ingest and replay output must be byte-identical
to what its structs marshal, so signatures and diffs agree across languages. Go sorts map keys,
writes no spaces, escapes ``<``, ``>``, ``&``, U+2028 and U+2029, and formats floats with the
shortest round-trip digits in fixed notation unless the exponent is below -6 or at least 21.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


# A number token with a fraction or exponent, as the C encoder writes floats. Strings that happen
# to contain such text only send the value down the slow path, which is still exact.
_FLOAT_TOKEN = re.compile(r"[:,\[]-?\d+(?:\.|[eE])")
# The exact check behind a _FLOAT_TOKEN hit: the text is strings, punctuation and integers only
# (outside strings, digits only occur in numbers). Possessive quantifiers: linear, no backtracking.
# Without it, a payload like {"image": "api:1.4.2"} went down the ~10x slower exact encoder.
_NO_FLOAT_OUTSIDE_STRINGS = re.compile(r'(?:"(?:[^"\\]++|\\.)*+"|[^"0-9]++|[0-9]++(?![.eE]))*+')
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")


def _unsupported(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# What json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# builds on every call, built once: the C encoder itself (no circular-reference bookkeeping; a
# cyclic value ends in RecursionError either way, as it did through json.dumps and _encode).
_c_encode: Callable[[Any, int], tuple[str, ...]] = c_make_encoder(
    None, _unsupported, encode_basestring, None, ":", ",", True, False, False
)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)
        if "e" not in text:
            text = f"{value:e}"
        mantissa, exponent = text.split("e")
        sign = exponent[0]
        digits = exponent[1:].lstrip("0") or "0"
        # Go keeps two exponent digits for large magnitudes ("1e+21") but trims "1e-07" to "1e-7".
        if sign == "+":
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _string(value: str) -> str:
    text: str = encode_basestring(value)  # what json.dumps(value, ensure_ascii=False) calls
    return text.translate(_HTML_ESCAPES) if _GO_ESCAPED.search(text) else text


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        _encode_object(value, out)
    elif isinstance(value, list | tuple):
        _encode_array(value, out)
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _encode_object(value: dict[Any, Any], out: list[str]) -> None:
    out.append("{")
    for key in sorted(value):
        _encode(key, out)
        out.append(":")
        _encode(value[key], out)
        out.append(",")
    if value:
        out[-1] = "}"  # in place of the last comma
    else:
        out.append("}")


def _encode_array(value: list[Any] | tuple[Any, ...], out: list[str]) -> None:
    out.append("[")
    for item in value:
        _encode(item, out)
        out.append(",")
    if value:
        out[-1] = "]"  # in place of the last comma
    else:
        out.append("]")


def dumps(value: Any) -> str:
    """Marshal ``value`` as Go's ``json.Marshal`` would a ``map[string]any`` of it."""
    if isinstance(value, str):
        return _string(value)
    # Fast path: the C encoder agrees with Go byte for byte except on floats and HTML escaping,
    # so use it unless a float was written; escape afterwards only when needed.
    try:
        text = "".join(_c_encode(value, 0))
    except (TypeError, ValueError):
        text = None  # let the exact encoder raise its own, Go-worded error
    if (
        text is None
        or text[:1] not in "{["
        or (_FLOAT_TOKEN.search(text) and not _NO_FLOAT_OUTSIDE_STRINGS.fullmatch(text))
    ):
        out: list[str] = []
        _encode(value, out)
        return "".join(out)
    if _GO_ESCAPED.search(text):
        text = text.translate(_HTML_ESCAPES)
    return text


def dumps_str(value: str) -> str:
    """Marshal a string as Go does (``dumps`` of a ``str``, without the type dispatch)."""
    return _string(value)


def dumps_ordered(fields: list[tuple[str, Any]]) -> str:
    """Marshal a Go struct: fields in declaration order (maps inside are still sorted)."""
    return "{" + ",".join(f"{dumps(key)}:{dumps(value)}" for key, value in fields) + "}"
