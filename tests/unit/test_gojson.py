from __future__ import annotations

import math

import pytest

from schemas.gojson import dumps, dumps_ordered


@pytest.mark.parametrize(
    ("value", "go"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-5, "0.00001"),
        (123456789012345678.0, "123456789012345680"),
        (3.14159, "3.14159"),
        (5, "5"),
    ],
)
def test_numbers_match_go(value: float, go: str) -> None:
    assert dumps(value) == go


def test_maps_sorted_and_html_escaped_like_go() -> None:
    assert dumps({"b": "<&>\u2028", "a": [True, None], "é": "ü"}) == (
        '{"a":[true,null],"b":"\\u003c\\u0026\\u003e\\u2028","é":"ü"}'
    )
    assert dumps_ordered([("z", 1), ("a", {"y": 1, "x": 2})]) == '{"z":1,"a":{"x":2,"y":1}}'


def test_non_json_values_are_refused() -> None:
    with pytest.raises(ValueError):
        dumps(math.inf)
    with pytest.raises(TypeError):
        dumps({"a": object()})


def test_fast_and_exact_paths_agree() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.gojson import _encode

    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    def check(value: dict[str, object]) -> None:
        exact: list[str] = []
        _encode(value, exact)
        assert dumps(value) == "".join(exact)

    check()
