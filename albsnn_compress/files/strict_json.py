"""Strict JSON for files that may be hostile: container headers and reports.

Python's ``json`` silently keeps the last of duplicate keys, accepts ``NaN`` and
``Infinity``, turns ``1e999`` into ``inf``, parses integers of any length (then
raises a bare ``ValueError`` past 4300 digits) and recurses until it hits the
interpreter's limit. :func:`strict_loads` refuses each of these with one
:class:`StrictJSONError` whose message says what was found; callers prefix it
with the file and field and re-raise their own error type.

Cost: time and memory are linear in the text's length. The nesting depth and
the number of objects and arrays are measured on the text before anything is
parsed (one vectorized pass over its bytes, :class:`_DepthScan`), so no Python
object is made per value beyond what ``json`` itself builds, and a caller can
refuse a text that would build millions of containers (``max_containers``); the
per-integer and per-string checks run only when a cheap scan of the text finds a
literal they could refuse.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from albsnn_compress.errors import StrictJSONError

__all__ = ["strict_loads"]

# A surrogate escape (``\ud800``-``\udfff``) or a raw surrogate: the only ways a decoded string can hold one.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
# A number whose exponent has at most two digits and which has fewer than 200 digits in a row is below 1e299,
# far from overflowing a float (1.8e308): only a text with a longer exponent or digit run needs the overflow check.
_FLOAT_SAFE_DIGITS = 200
_WHITESPACE = np.frombuffer(b" \t\r\n", dtype=np.uint8)


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not allowed (numbers must be finite)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:40]} overflows to {value}")
    return value


_CHUNK = 1 << 18  # characters scanned at a time: the scan's temporaries stay a few MiB


class _DepthScan:
    """The deepest value of JSON text fed in pieces, in levels (a value inside a container is one level deeper).

    Works on UTF-8 bytes, not on parsed values: a quote preceded by an even run
    of backslashes opens or closes a string, and brackets outside strings move
    the depth. No byte of a multi-byte UTF-8 character equals a quote, a
    backslash or a bracket, so this is exact for valid JSON (and harmless for
    invalid JSON, which the parser then refuses). State carried between pieces:
    inside a string or not, the depth, the backslashes at the end of the piece.

    On the way it finds the longest run of digits and whether an ``e``/``E``
    (optionally signed) is followed by three digits or more, anywhere (strings
    included: a false alarm only costs the slow check), so the parser's Python
    hooks for numbers run only on a text whose numbers could need them.
    """

    def __init__(self) -> None:
        self.in_string = False
        self.depth = 0
        self.backslashes = 0  # length of the backslash run that ends the text so far
        self.deepest = 0
        self.containers = 0  # objects and arrays so far
        self.longest_digits = 0  # longest run of ASCII digits
        self.long_exponent = False  # an e/E, a sign or not, then 3+ digits
        self._digits = 0  # length of the digit run that ends the text so far
        self._tail = b""  # the last 4 bytes, for an exponent that straddles two pieces

    def feed(self, data: bytes) -> None:
        raw = np.frombuffer(data, dtype=np.uint8)
        if raw.size == 0:
            return
        backslash = raw == ord("\\")
        quotes = np.flatnonzero(raw == ord('"'))
        if quotes.size:
            quotes = quotes[~self._escaped(quotes, backslash)]
        toggles = np.zeros(raw.size, dtype=np.int8)
        toggles[quotes] = 1
        parity = np.cumsum(toggles, dtype=np.int8) & 1  # int8 wraps at 256, which keeps the parity
        in_string = parity.view(np.bool_) ^ self.in_string
        in_string[quotes] = True  # both quote characters belong to their string
        opens = ((raw == ord("[")) | (raw == ord("{"))) & ~in_string
        closes = ((raw == ord("]")) | (raw == ord("}"))) & ~in_string
        step = opens.view(np.int8) - closes.view(np.int8)
        # The level of the container a byte sits in; an opening bracket sits in its parent.
        level = np.cumsum(step, dtype=np.int64) + self.depth - opens
        content = ~np.isin(raw, _WHITESPACE)
        if content.any():
            self.deepest = max(self.deepest, int(level[content].max()) + 1)
        self.depth += int(step.sum(dtype=np.int64))
        self.containers += int(np.count_nonzero(opens))
        self.in_string = bool(parity[-1]) ^ self.in_string
        plain = np.flatnonzero(~backslash)
        self.backslashes = raw.size - 1 - int(plain[-1]) if plain.size else self.backslashes + raw.size
        self._numbers(raw, data)

    def _numbers(self, raw: np.ndarray, data: bytes) -> None:
        digit = (raw >= ord("0")) & (raw <= ord("9"))
        breaks = np.flatnonzero(~digit)
        if breaks.size == 0:
            self._digits += raw.size
            self.longest_digits = max(self.longest_digits, self._digits)
        else:
            inner = int((np.diff(breaks) - 1).max()) if breaks.size > 1 else 0
            self.longest_digits = max(self.longest_digits, self._digits + int(breaks[0]), inner)
            self._digits = raw.size - 1 - int(breaks[-1])
            self.longest_digits = max(self.longest_digits, self._digits)
        if not self.long_exponent:
            window = np.frombuffer(
                self._tail + data + b"    ", dtype=np.uint8
            )  # 4 spaces: nothing is read past the end
            is_digit = (window >= ord("0")) & (window <= ord("9"))
            marks = np.flatnonzero((window[:-4] | 0x20) == ord("e"))  # e or E
            if marks.size:
                signed = (window[marks + 1] == ord("+")) | (window[marks + 1] == ord("-"))
                first = marks + 1 + signed
                self.long_exponent = bool((is_digit[first] & is_digit[first + 1] & is_digit[first + 2]).any())
            self._tail = (self._tail + data)[-4:]

    def _escaped(self, quotes: np.ndarray, backslash: np.ndarray) -> np.ndarray:
        """For each quote position, whether an odd run of backslashes precedes it (continuing the last piece's run)."""
        after = quotes > 0
        preceded = np.zeros(quotes.size, dtype=np.bool_)
        preceded[after] = backslash[quotes[after] - 1]
        runs = np.zeros(quotes.size, dtype=np.int64)
        if preceded.any():
            starts = np.flatnonzero(backslash & ~np.concatenate(([False], backslash[:-1])))
            hit = quotes[preceded]
            run_start = starts[np.searchsorted(starts, hit - 1, side="right") - 1]
            runs[preceded] = hit - run_start + np.where(run_start == 0, self.backslashes, 0)
        runs[quotes == 0] = self.backslashes
        odd: np.ndarray = runs % 2 == 1
        return odd


def _check_shape(text: str, max_depth: int, max_containers: int | None) -> _DepthScan:
    """Refuse text nested deeper than ``max_depth`` levels or with too many objects and arrays, before parsing."""
    scan = _DepthScan()
    for start in range(0, len(text), _CHUNK):  # a text over a limit is refused at the first piece that shows it
        scan.feed(text[start : start + _CHUNK].encode("utf-8", "surrogatepass"))
        if scan.deepest > max_depth:
            raise StrictJSONError(f"nesting deeper than {max_depth} levels")
        if max_containers is not None and scan.containers > max_containers:
            more = " or more" if start + _CHUNK < len(text) else ""
            raise StrictJSONError(f"{scan.containers}{more} objects and arrays, at most {max_containers} allowed")
    return scan


def _check_strings(value: Any) -> None:
    """Reject strings (keys or values) that are not Unicode: unpaired surrogate escapes."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            strings = list(item)
            children = item.values()
        else:
            strings = []
            children = item
        for child in children:
            if isinstance(child, (dict, list)):
                pending.append(child)
            elif isinstance(child, str):
                strings.append(child)
        for string in strings:
            if not string.isascii():
                try:
                    string.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise StrictJSONError(f"string {string[:40]!r} holds an unpaired surrogate escape") from exc


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: parsed JSON is a tree (no cycles to find), and a header of
    millions of small arrays would otherwise trigger thousands of collections (3x the parse time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def strict_loads(
    text: str, *, max_depth: int, max_int_digits: int, trailing: str = " \t\r\n", max_containers: int | None = None
) -> Any:
    """Parse one JSON value, refusing what ``json.loads`` would let through (see module docs).

    The depth counts values on the path from the top: a top-level scalar is 1
    level, ``{"a": 1}`` is 2, ``{"a": []}`` is 2 and ``{"a": [1]}`` is 3.

    Args:
        text: the JSON text.
        max_depth: deepest allowed nesting of objects and arrays.
        max_int_digits: longest allowed integer literal.
        trailing: characters that may follow the value (padding).
        max_containers: most objects and arrays in all (``None``: no bound). Python builds
            about 100 bytes per container, so this bounds the memory parsing can take.

    Raises:
        StrictJSONError: with a message naming what was found and where.
    """
    scan = _check_shape(text, max_depth, max_containers)

    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > max_int_digits:
            raise StrictJSONError(f"integer with {len(literal)} digits (at most {max_int_digits} allowed)")
        return int(literal)

    # Only a text with a long run of digits can hold a too-long integer, and only one with a long exponent
    # or digit run a float that overflows: elsewhere json's own int() and float() are safe (and 3x faster).
    float_risk = scan.long_exponent or scan.longest_digits >= _FLOAT_SAFE_DIGITS
    decoder = json.JSONDecoder(
        object_pairs_hook=_pairs_without_duplicates,
        parse_constant=_reject_constant,
        parse_int=parse_int if scan.longest_digits > max_int_digits else None,
        parse_float=_parse_float if float_risk else None,
    )
    try:
        with _collector_paused():
            value, end = decoder.raw_decode(text)
    except RecursionError:
        # from None: the chained RecursionError would repeat a thousand frames of the parser
        raise StrictJSONError(f"nesting deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if text[end:].strip(trailing):
        raise StrictJSONError(f"junk after the JSON object at character {end} (only padding may follow)")
    if isinstance(value, (dict, list)) and ("\\u" in text or not text.isascii()) and _SURROGATE.search(text):
        _check_strings(value)
    elif isinstance(value, str) and not value.isascii():
        _check_strings([value])
    return value
