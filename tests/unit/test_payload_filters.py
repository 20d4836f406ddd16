"""Payload filters (schemas/filters.py): semantics, validation naming the path, limits, laws."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.filters import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    FilterError,
    check_filter,
    compile_filter,
    json_equal,
)

DOC: dict[str, Any] = {
    "id": "evt_1",
    "type": "instance.created",
    "tenant_id": "ten_a",
    "instance_id": "inst_1",
    "payload": {
        "region": "eu",
        "replicas": 3,
        "ready": True,
        "owner": None,
        "tags": ["a", "b"],
        "spec": {"cpu": 2.5, "image": "nginx:1"},
    },
    "timestamp": "2026-01-01T00:00:00Z",
}


def accepts(filter_: Any, doc: Any = None) -> bool:
    return compile_filter(filter_)(DOC if doc is None else doc)


def test_the_issue_example_matches_and_each_part_can_fail() -> None:
    example = {
        "instance_id": {"$exist": True},
        "payload": {"region": "eu", "replicas": {"$gte": 3}},
    }
    assert accepts(example)
    assert accepts(example, {**DOC, "instance_id": None})  # present, even null, exists
    no_instance = {k: v for k, v in DOC.items() if k != "instance_id"}
    assert not accepts(example, no_instance)
    assert not accepts(example, {**DOC, "payload": {**DOC["payload"], "region": "us"}})
    assert not accepts(example, {**DOC, "payload": {**DOC["payload"], "replicas": 2}})


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({}, True),
        ({"type": "instance.created"}, True),
        ({"type": "instance.deleted"}, False),
        ({"payload": {"replicas": 3}}, True),
        ({"payload": {"replicas": 3.0}}, True),  # 3 == 3.0 in JSON
        ({"payload": {"ready": 1}}, False),  # true is not 1
        ({"payload": {"replicas": True}}, False),
        ({"payload": {"owner": None}}, True),
        ({"payload": {"tags": ["a", "b"]}}, True),  # a bare array: equality
        ({"payload": {"tags": ["b", "a"]}}, False),
        ({"payload": {"spec": {"$eq": {"cpu": 2.5, "image": "nginx:1"}}}}, True),
        ({"payload": {"spec": {"cpu": {"$gt": 2}}}}, True),
        ({"payload": {"region": {"$neq": "us"}}}, True),
        ({"payload": {"missing": {"$neq": "us"}}}, True),  # absent differs from anything
        ({"payload": {"missing": {"$eq": None}}}, False),  # absent is not null
        ({"payload": {"region": {"$in": ["eu", "us"]}}}, True),
        ({"payload": {"region": {"$in": ["ap", 1]}}}, False),
        ({"payload": {"replicas": {"$in": [1, 3]}}}, True),
        ({"payload": {"region": {"$nin": ["eu"]}}}, False),
        ({"payload": {"missing": {"$nin": ["eu"]}}}, True),
        ({"payload": {"replicas": {"$gt": 3}}}, False),
        ({"payload": {"replicas": {"$gte": 3, "$lte": 3}}}, True),
        ({"payload": {"replicas": {"$lt": 4}}}, True),
        ({"payload": {"replicas": {"$lt": "4"}}}, False),  # numbers compare with numbers only
        ({"payload": {"region": {"$gte": "eu", "$lt": "ev"}}}, True),
        ({"payload": {"ready": {"$gt": 0}}}, False),  # a boolean is not a number
        ({"payload": {"owner": {"$exist": True}}}, True),  # present, even null
        ({"payload": {"missing": {"$exist": False}}}, True),
        ({"actor_id": {"$exist": True}}, False),
        ({"payload": {"region": {"deeper": 1}}}, False),  # a string has no members
        ({"$or": [{"type": "x"}, {"payload": {"region": "eu"}}]}, True),
        ({"$or": [{"type": "x"}, {"payload": {"region": "us"}}]}, False),
        ({"$and": [{"type": "instance.created"}, {"payload": {"region": "eu"}}]}, True),
        ({"$and": [{"type": "instance.created"}, {"payload": {"region": "us"}}]}, False),
        ({"$not": {"payload": {"region": "us"}}}, True),
        ({"payload": {"$not": {"region": "eu"}}}, False),
        ({"payload": {"region": {"$or": [{"$eq": "us"}, {"$eq": "eu"}]}}}, True),
    ],
)
def test_semantics(filter_: dict[str, Any], expected: bool) -> None:
    assert accepts(filter_) is expected


@pytest.mark.parametrize(
    ("filter_", "path", "reason"),
    [
        ({"payload": {"replicas": {"$gte": [3]}}}, "filter.payload.replicas.$gte", "number or"),
        ({"payload": {"replicas": {"$gte": True}}}, "filter.payload.replicas.$gte", "boolean"),
        ({"payload": {"x": {"$regex": "a"}}}, "filter.payload.x.$regex", "unknown operator"),
        ({"x": {"$in": "a"}}, "filter.x.$in", "must be an array"),
        ({"x": {"$exist": 1}}, "filter.x.$exist", "true or false"),
        ({"$or": []}, "filter.$or", "non-empty array"),
        ({"$and": [{"a": 1}, 3]}, "filter.$and[1]", "filter object"),
        ({"$not": [1]}, "filter.$not", "filter object"),
        ({"a": float("nan")}, "filter", "not JSON"),
    ],
)
def test_invalid_filters_name_the_path_and_reason(
    filter_: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(FilterError) as caught:
        check_filter(filter_)
    assert caught.value.field == path
    assert reason in caught.value.reason


def test_the_filter_itself_must_be_an_object() -> None:
    with pytest.raises(FilterError, match="JSON object"):
        check_filter(["a"])


def test_limits_depth_nodes_and_bytes() -> None:
    nested: dict[str, Any] = {"x": 1}
    for _ in range(MAX_DEPTH - 2):
        nested = {"a": nested}
    check_filter(nested)  # exactly at the limit
    with pytest.raises(FilterError, match="too deep") as deep:
        check_filter({"a": nested})
    assert deep.value.field.startswith("filter.a.a")
    check_filter({f"k{i}": i for i in range(MAX_NODES - 1)})
    with pytest.raises(FilterError, match=f"more than {MAX_NODES} nodes"):
        check_filter({f"k{i}": i for i in range(MAX_NODES)})
    with pytest.raises(FilterError, match=f"at most {MAX_BYTES}"):
        check_filter({"a": "x" * MAX_BYTES})


def test_compiled_filters_do_not_see_later_changes_of_their_source() -> None:
    source: dict[str, Any] = {"payload": {"region": {"$in": ["eu"]}}}
    predicate = compile_filter(source)
    source["payload"]["region"]["$in"].append("us")
    assert not predicate({"payload": {"region": "us"}})


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal({"a": [1, True]}, {"a": [True, 1]})
    assert not json_equal(0, False)
    assert not json_equal("1", 1)


# -- laws, over generated filters and documents -----------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, 2.5]),
    st.sampled_from(["eu", "us", "a"]),
)
_keys = st.sampled_from(["region", "replicas", "tags", "spec"])
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8,
)


def _filters() -> st.SearchStrategy[dict[str, Any]]:
    leaf_ops = st.one_of(
        st.builds(lambda v: {"$eq": v}, _scalars),
        st.builds(lambda v: {"$neq": v}, _scalars),
        st.builds(lambda v: {"$in": v}, st.lists(_scalars, max_size=3)),
        st.builds(lambda v: {"$nin": v}, st.lists(_scalars, max_size=3)),
        st.builds(
            lambda op, v: {op: v},
            st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
            st.one_of(st.integers(-5, 5), st.sampled_from(["eu", "us"])),
        ),
        st.builds(lambda v: {"$exist": v}, st.booleans()),
        _scalars,
    )
    return st.recursive(
        st.dictionaries(_keys, leaf_ops, max_size=2),
        lambda inner: st.one_of(
            st.dictionaries(_keys, inner, max_size=2),
            st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=2)),
            st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=2)),
            st.builds(lambda f: {"$not": f}, inner),
        ),
        max_leaves=6,
    )


def _fits(filter_: dict[str, Any]) -> bool:
    try:
        check_filter({"$not": {"$or": [filter_, filter_]}})
    except FilterError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(_filters(), _documents)
def test_a_filter_and_its_not_never_both_match(filter_: dict[str, Any], doc: Any) -> None:
    if not _fits(filter_):
        return
    assert compile_filter(filter_)(doc) != compile_filter({"$not": filter_})(doc)


@settings(max_examples=300, deadline=None)
@given(_filters(), _filters(), _documents)
def test_or_with_anything_matches_whatever_the_filter_matches(
    filter_: dict[str, Any], other: dict[str, Any], doc: Any
) -> None:
    either = {"$or": [filter_, other]}
    if not (_fits(filter_) and _fits(other)):
        return
    try:
        check_filter(either)
    except FilterError:
        return
    if compile_filter(filter_)(doc):
        assert compile_filter(either)(doc)
    assert compile_filter(either)(doc) == (
        compile_filter(filter_)(doc) or compile_filter(other)(doc)
    )


@settings(max_examples=200, deadline=None)
@given(_filters())
def test_valid_filters_survive_their_json_text(filter_: dict[str, Any]) -> None:
    if not _fits(filter_):
        return
    assert check_filter(json.loads(json.dumps(filter_))) == filter_
