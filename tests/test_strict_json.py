"""Strict JSON: what Python's json lets through is refused with a message that says what."""

from __future__ import annotations

import json
import time
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albsnn_compress.errors import StrictJSONError
from albsnn_compress.files import strict_json
from albsnn_compress.files.strict_json import strict_loads

LIMITS = {"max_depth": 4, "max_int_digits": 6}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": NaN}', "NaN is not allowed"),
        ('{"a": -Infinity}', "-Infinity is not allowed"),
        ('{"a": 1e999}', "number 1e999 overflows to inf"),
        ('{"a": 12345678}', "integer with 8 digits"),
        ("[[[[[1]]]]]", "nesting deeper than 4 levels"),
        ('{"a": "x\\ud800"}', "unpaired surrogate"),
        ('{"a": 1} x', "junk after the JSON object at character 8"),
        ('{"a": ', "not valid JSON"),
    ],
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(StrictJSONError, match=message):
        strict_loads(text, **LIMITS)


def test_accepts_plain_json_and_padding() -> None:
    assert strict_loads('{"a": [1, 2.5, "é"], "b": null}  \n', **LIMITS) == {"a": [1, 2.5, "é"], "b": None}
    with pytest.raises(StrictJSONError, match="junk after"):
        strict_loads('{"a": 1}\n', trailing=" ", **LIMITS)


def _reference_depth(value, depth: int = 1) -> int:
    """Levels of ``value`` the slow way: a value inside a container is one level deeper."""
    if isinstance(value, dict):
        return max([depth] + [_reference_depth(child, depth + 1) for child in value.values()])
    if isinstance(value, list):
        return max([depth] + [_reference_depth(child, depth + 1) for child in value])
    return depth


_TRICKY_TEXT = st.text(alphabet=st.sampled_from(['"', "\\", "[", "]", "{", "}", "a", "é", " ", "\n"]), max_size=8)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TRICKY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TRICKY_TEXT, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_VALUES, indent=st.sampled_from([None, 1]), chunk=st.sampled_from([1, 2, 3, 7, 1 << 20]))
def test_depth_scan_of_the_text_equals_the_depth_of_the_value(value, indent, chunk: int) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    depth = _reference_depth(value)
    with mock.patch.object(strict_json, "_CHUNK", chunk):  # pieces that split escapes and strings
        assert strict_loads(text, max_depth=depth, max_int_digits=400) == value
        with pytest.raises(StrictJSONError, match="nesting deeper than"):
            strict_loads(text, max_depth=depth - 1, max_int_digits=400)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("5", 1),
        ("[]", 1),
        ("{}", 1),
        ('{"a": 1}', 2),
        ('{"a": []}', 2),
        ('{"a": [1]}', 3),
        ('["[[[", "\\"[["]', 2),
        ('"\\\\"', 1),
    ],
)
def test_depth_examples(text: str, depth: int) -> None:
    strict_loads(text, max_depth=depth, max_int_digits=6)
    with pytest.raises(StrictJSONError, match="nesting deeper than"):
        strict_loads(text, max_depth=depth - 1, max_int_digits=6)


def test_parsing_time_is_linear_in_the_text() -> None:
    """16 MiB of tiny arrays once took 24 s (a Python walk over every value after parsing): now about 1 s."""

    def seconds(count: int) -> float:
        text = '{"a":[' + "[]," * count + "[]]}"
        start = time.perf_counter()
        strict_loads(text, max_depth=4, max_int_digits=20)
        return time.perf_counter() - start

    small, large = min(seconds(1 << 17) for _ in range(3)), min(seconds(1 << 20) for _ in range(3))
    assert large < 12 * small + 0.05, (small, large)  # 8x the text: linear, with room for a noisy machine


def test_long_digit_runs_in_strings_are_not_integers() -> None:
    """The integer check runs only when the text has a long run of digits; one inside a string is fine."""
    assert strict_loads('{"a": "12345678", "b": 12}', **LIMITS) == {"a": "12345678", "b": 12}
    with pytest.raises(StrictJSONError, match="integer with 7 digits"):
        strict_loads('{"a": "12345678", "b": 1234567}', **LIMITS)


def test_objects_and_arrays_can_be_bounded_before_parsing() -> None:
    text = '{"a": [[], {}, [[]]], "b": "[[[{{{"}'
    assert strict_loads(text, max_containers=6, **LIMITS)["b"] == "[[[{{{"  # brackets in strings do not count
    with pytest.raises(StrictJSONError, match="6 objects and arrays, at most 5 allowed"):
        strict_loads(text, max_containers=5, **LIMITS)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 18])
@pytest.mark.parametrize("literal", ["1e999", "-2.5E+400", "1" + "0" * 210 + "e99", "1" + "0" * 310 + ".5", "1e0400"])
def test_every_float_that_overflows_is_refused(literal: str, chunk: int) -> None:
    """The float check is skipped when no literal can overflow; each of these can, and is refused (in any pieces)."""
    with mock.patch.object(strict_json, "_CHUNK", chunk):
        with pytest.raises(StrictJSONError, match="overflows to"):
            strict_loads('{"a": [0.5, ' + literal + "]}", max_depth=4, max_int_digits=400)
        assert strict_loads('{"a": [0.5, 1e99, 1e-999, "1e999"]}', **LIMITS) == {"a": [0.5, 1e99, 0.0, "1e999"]}
        with pytest.raises(StrictJSONError, match="integer with 7 digits"):
            strict_loads('{"a": [12, 1234567]}', **LIMITS)
