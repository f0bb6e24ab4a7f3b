"""Strict JSON: what Python's json lets through is refused with a message that says what."""

from __future__ import annotations

import pytest

from albsnn_compress.strict_json import StrictJSONError, strict_loads

LIMITS = {"max_depth": 4, "max_int_digits": 6}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": NaN}', "NaN is not allowed"),
        ('{"a": -Infinity}', "-Infinity is not allowed"),
        ('{"a": 1e999}', "number 1e999 overflows to inf"),
        ('{"a": 12345678}', "integer with 8 digits"),
        ('[[[[[1]]]]]', "nesting deeper than 4 levels"),
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
