"""Strict JSON for files that may be hostile: container headers and reports.

Python's ``json`` silently keeps the last of duplicate keys, accepts ``NaN`` and
``Infinity``, turns ``1e999`` into ``inf``, parses integers of any length (then
raises a bare ``ValueError`` past 4300 digits) and recurses until it hits the
interpreter's limit. :func:`strict_loads` refuses each of these with one
:class:`StrictJSONError` whose message says what was found; callers prefix it
with the file and field and re-raise their own error type.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["StrictJSONError", "strict_loads"]


class StrictJSONError(ValueError):
    """The text is not JSON this package accepts; the message says why."""


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not allowed (numbers must be finite)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:40]} overflows to {value}")
    return value


def _check_structure(value: Any, max_depth: int) -> None:
    """Bound the nesting depth; reject strings that are not Unicode (unpaired surrogate escapes)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise StrictJSONError(f"nesting deeper than {max_depth} levels")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise StrictJSONError(f"string {item[:40]!r} holds an unpaired surrogate escape") from None


def strict_loads(text: str, *, max_depth: int, max_int_digits: int, trailing: str = " \t\r\n") -> Any:
    """Parse one JSON value, refusing what ``json.loads`` would let through (see module docs).

    Args:
        text: the JSON text.
        max_depth: deepest allowed nesting of objects and arrays.
        max_int_digits: longest allowed integer literal.
        trailing: characters that may follow the value (padding).

    Raises:
        StrictJSONError: with a message naming what was found and where.
    """

    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > max_int_digits:
            raise StrictJSONError(f"integer with {len(literal)} digits (at most {max_int_digits} allowed)")
        return int(literal)

    decoder = json.JSONDecoder(
        object_pairs_hook=_pairs_without_duplicates, parse_constant=_reject_constant,
        parse_int=parse_int, parse_float=_parse_float,
    )
    try:
        value, end = decoder.raw_decode(text)
    except RecursionError:
        raise StrictJSONError(f"nesting deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if text[end:].strip(trailing):
        raise StrictJSONError(f"junk after the JSON object at character {end} (only padding may follow)")
    _check_structure(value, max_depth)
    return value
