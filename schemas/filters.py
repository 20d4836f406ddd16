"""Payload filters of a webhook: which events of its subscribed types it really receives.

A filter is a JSON object mirroring the event's JSON form (Ctrl Plane's, as delivered), in the
style of Outpost's destination filters::

    {"instance_id": {"$exist": true}, "payload": {"region": "eu", "replicas": {"$gte": 3}}}

Semantics (every rule applies at "the current value", the event document at the top):

* an object is the conjunction of its entries; ``{}`` matches everything;
* a plain key (``payload``) applies its sub-filter to that member of the current value (absent
  when the value is not an object or has no such member);
* a bare value (string, number, boolean, null, array) means equality with the current value;
  an object operand compares through ``$eq``;
* ``$eq``/``$neq``: JSON equality (``true`` is not ``1``; ``1`` is ``1.0``); ``$neq`` and
  ``$nin`` match an absent value, every other comparison does not;
* ``$in``/``$nin``: an array of values the current value is (not) equal to one of;
* ``$gt``/``$gte``/``$lt``/``$lte``: a number or a string operand, compared with values of the
  same kind only (numbers with numbers, strings by code point);
* ``$exist``: ``true`` when the member is present (even ``null``), ``false`` when absent;
* ``$and``/``$or``: a non-empty array of filter objects, all/any of which match the current value;
  ``$not``: a filter object that must not match it.

A filter is validated when written (:func:`check_filter`, errors name the path, e.g.
``filter.payload.replicas.$gte``) and compiled once into a tree of closures
(:func:`compile_filter`): evaluating it never uses ``eval``, visits each filter node at most
once, and the limits below bound both the tree and the work per event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from schemas.errors import ContractError

MAX_DEPTH = 8  # nesting of objects and arrays, the filter object itself being 1
MAX_NODES = 64  # JSON values in the filter, every object, array and scalar counted
MAX_BYTES = 4096  # its compact JSON text, UTF-8

Predicate = Callable[[Any], bool]

_MISSING: Any = object()  # the "current value" of an absent member
_COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = frozenset(
    {"$eq", "$neq", "$in", "$nin", "$exist", "$or", "$and", "$not", *_COMPARISONS}
)


class FilterError(ContractError):
    """An invalid filter: ``field`` is the path of the offending node (``filter.payload.x``)."""


def check_filter(value: Any, path: str = "filter") -> dict[str, Any]:
    """``value`` if it is a valid filter (a copy), else FilterError naming the path and reason."""
    if not isinstance(value, Mapping):
        raise FilterError(path, f"must be a JSON object, got {_kind(value)}")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FilterError(path, f"is not JSON ({exc})") from None
    size = len(text.encode())
    if size > MAX_BYTES:
        raise FilterError(path, f"is too large: {size} bytes of JSON, at most {MAX_BYTES}")
    nodes = [0]
    _check_object(value, path, 1, nodes)
    copied: dict[str, Any] = json.loads(text)
    return copied


def filter_text(value: Any, path: str = "filter") -> str:
    """The compact JSON text of a valid filter (the stored form), or FilterError."""
    return json.dumps(check_filter(value, path), separators=(",", ":"), ensure_ascii=False)


def compile_filter(value: Any, path: str = "filter") -> Predicate:
    """A predicate over an event document (``Event.to_json_dict()``) for the filter ``value``.

    Validates first (FilterError); build it once per webhook version, call it per event.
    """
    return _compile_object(check_filter(value, path))


# -- validation ---------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _count(path: str, depth: int, nodes: list[int]) -> None:
    nodes[0] += 1
    if nodes[0] > MAX_NODES:
        raise FilterError(path, f"is too large: more than {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise FilterError(path, f"is too deep: more than {MAX_DEPTH} levels")


def _check_object(value: Mapping[str, Any], path: str, depth: int, nodes: list[int]) -> None:
    _count(path, depth, nodes)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key.startswith("$"):
            _check_operator(key, item, where, depth + 1, nodes)
        elif isinstance(item, Mapping):
            _check_object(item, where, depth + 1, nodes)
        else:
            _check_value(item, where, depth + 1, nodes)


def _check_value(value: Any, path: str, depth: int, nodes: list[int]) -> None:
    """Any JSON value (an operand): counted, and its depth bounded."""
    _count(path, depth, nodes)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_value(item, f"{path}.{key}", depth + 1, nodes)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1, nodes)
    elif isinstance(value, float) and not math.isfinite(value):
        raise FilterError(path, f"{value} is not a JSON number")


def _check_operator(op: str, operand: Any, path: str, depth: int, nodes: list[int]) -> None:
    if op not in _OPERATORS:
        raise FilterError(path, f"unknown operator {op!r}; known: {', '.join(sorted(_OPERATORS))}")
    if op in ("$not", "$and", "$or"):
        _check_logical(op, operand, path, depth, nodes)
    elif op in ("$eq", "$neq"):
        _check_value(operand, path, depth, nodes)
    elif op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple):
            raise FilterError(path, f"must be an array, got {_kind(operand)}")
        _check_value(operand, path, depth, nodes)
    elif op in _COMPARISONS:
        number = isinstance(operand, int | float) and not isinstance(operand, bool)
        if not (number or isinstance(operand, str)):
            raise FilterError(path, f"must be a number or a string, got {_kind(operand)}")
        _check_value(operand, path, depth, nodes)
    else:  # $exist
        if not isinstance(operand, bool):
            raise FilterError(path, f"must be true or false, got {_kind(operand)}")
        _count(path, depth, nodes)


def _check_logical(op: str, operand: Any, path: str, depth: int, nodes: list[int]) -> None:
    if op == "$not":
        if not isinstance(operand, Mapping):
            raise FilterError(path, f"must be a filter object, got {_kind(operand)}")
        _check_object(operand, path, depth, nodes)
        return
    if not isinstance(operand, list | tuple) or not operand:
        raise FilterError(
            path, f"must be a non-empty array of filter objects, got {_kind(operand)}"
        )
    _count(path, depth, nodes)
    for index, item in enumerate(operand):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise FilterError(where, f"must be a filter object, got {_kind(item)}")
        _check_object(item, where, depth + 1, nodes)


# -- evaluation ---------------------------------------------------------------------------


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: booleans are not numbers (Python's ``True == 1`` is), ``1 == 1.0``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict):
        return (
            isinstance(right, dict)
            and left.keys() == right.keys()
            and all(json_equal(item, right[key]) for key, item in left.items())
        )
    if isinstance(left, list):
        return (
            isinstance(right, list)
            and len(left) == len(right)
            and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
        )
    return type(left) is type(right) and bool(left == right)


def _equals(operand: Any) -> Predicate:
    # Specialised per operand kind at compile time: the common string/number cases are one
    # class check and one comparison per event.
    if operand is None:
        return lambda value: value is None
    if isinstance(operand, bool):
        return lambda value: value is operand
    if isinstance(operand, str):
        return lambda value: value.__class__ is str and value == operand
    if isinstance(operand, int | float):
        return lambda value: value.__class__ in (int, float) and value == operand
    return lambda value: json_equal(value, operand)


def _member_in(operand: list[Any]) -> Predicate:
    scalars = [item for item in operand if isinstance(item, str)]
    if len(scalars) == len(operand):
        # All strings (the usual case): one set lookup.
        members = frozenset(scalars)
        return lambda value: value.__class__ is str and value in members
    tests = [_equals(item) for item in operand]
    return lambda value: any(test(value) for test in tests)


def _compare(op: str, operand: Any) -> Predicate:
    kinds: tuple[type, ...] = (str,) if isinstance(operand, str) else (int, float)
    if op == "$gt":
        return lambda value: value.__class__ in kinds and value > operand
    if op == "$gte":
        return lambda value: value.__class__ in kinds and value >= operand
    if op == "$lt":
        return lambda value: value.__class__ in kinds and value < operand
    return lambda value: value.__class__ in kinds and value <= operand


def _negate(test: Predicate) -> Predicate:
    return lambda value: not test(value)


def _operator(op: str, operand: Any) -> Predicate:
    if op == "$eq":
        return _equals(operand)
    if op == "$neq":
        return _negate(_equals(operand))
    if op == "$in":
        return _member_in(operand)
    if op == "$nin":
        return _negate(_member_in(operand))
    if op in _COMPARISONS:
        return _compare(op, operand)
    if op == "$exist":
        wanted = bool(operand)
        return lambda value: (value is not _MISSING) is wanted
    if op == "$not":
        return _negate(_compile_object(operand))
    parts = tuple(_compile_object(item) for item in operand)
    if op == "$and":
        return _all(parts)
    return lambda value: any(part(value) for part in parts)


def _member(key: str, test: Predicate) -> Predicate:
    def member(value: Any) -> bool:
        found = value.get(key, _MISSING) if value.__class__ is dict else _MISSING
        return test(found)

    return member


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda value: all(part(value) for part in parts)


def _compile_object(value: Mapping[str, Any]) -> Predicate:
    parts: list[Predicate] = []
    for key, item in value.items():
        if key.startswith("$"):
            parts.append(_operator(key, item))
        elif isinstance(item, Mapping):
            parts.append(_member(key, _compile_object(item)))
        else:
            parts.append(_member(key, _equals(item)))
    if not parts:
        return lambda _value: True
    return _all(tuple(parts))
