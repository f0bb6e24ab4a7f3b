"""C source text for the C export: float literals that round-trip, const arrays, safe comments.

Every function here is pure and deterministic, so the same model always gives the
same bytes: floats are written as the shortest decimal that parses back to the same
float32 (``numpy.format_float_scientific(..., unique=True)``), bytes in hex.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CArray", "c_float", "c_uint", "c_comment", "render_array"]

_FLOATS_PER_LINE = 8
_BYTES_PER_LINE = 16


def c_float(value: float | np.floating[Any]) -> str:
    """A C ``float`` literal for ``value`` rounded to float32, e.g. ``1.5e+00f``; parses back bit for bit.

    Raises:
        ValueError: ``value`` is not finite (C99 has no portable literal for it).
    """
    single = np.float32(value)
    if not np.isfinite(single):
        raise ValueError(f"{value!r} is not a finite float32")
    return np.format_float_scientific(single, unique=True, trim="-") + "f"


def c_uint(value: int) -> str:
    """An unsigned C literal, e.g. ``28u``."""
    return f"{int(value)}u"


_COMMENT_MARKERS = re.compile(r"\*(?=/)|/(?=\*)")
"""A ``*`` before a ``/`` (``*/`` ends the comment) or a ``/`` before a ``*`` (``/*`` inside a comment is
``-Wcomment``, an error under ``-Werror``): a space goes after each."""
_TRIGRAPH = re.compile(r"\?(?=\?)")
"""``??`` starts a trigraph in C99 (``??/`` is a backslash): a space goes between the two."""


def c_comment(text: str) -> str:
    """``text`` made safe inside a ``/* ... */`` comment, on one line.

    Printable ASCII only (anything else, newlines and control characters included, becomes ``?``),
    no ``*/`` and no ``/*`` (a space goes between the two characters: ``* /``, ``/ *``), no
    trigraph (``? ?``), and no backslash at the end (it would join the next line in a ``//`` comment).

    Example:
        >>> c_comment("net */ int x; /* \\n")
        'net * / int x; / * ?'
    """
    ascii_text = "".join(c if " " <= c <= "~" else "?" for c in text)
    safe = _TRIGRAPH.sub("? ", _COMMENT_MARKERS.sub(lambda match: match.group() + " ", ascii_text))
    return safe.rstrip("\\")


@dataclass(frozen=True)
class CArray:
    """One const array of the model: ``static const <ctype> <name>[] = {...};`` (flash on a microcontroller)."""

    name: str
    ctype: str  # "float", "int32_t" or "uint8_t"
    values: bytes | np.ndarray  # packed bytes, or float32 / int32 values
    comment: str = ""

    @property
    def nbytes(self) -> int:
        """Bytes the array occupies: 1 per ``uint8_t``, 4 per ``float`` or ``int32_t``."""
        return len(self.values) if isinstance(self.values, bytes) else 4 * int(np.asarray(self.values).size)


def _lines(items: Sequence[str], per_line: int) -> Iterable[str]:
    for start in range(0, len(items), per_line):
        yield "    " + ", ".join(items[start : start + per_line]) + ","


def render_array(array: CArray) -> str:
    """The C definition of ``array``, one row of values per line."""
    if isinstance(array.values, bytes):
        items, per_line = [f"0x{byte:02x}" for byte in array.values], _BYTES_PER_LINE
    elif array.ctype == "int32_t":  # INT32_MIN has no literal of its own: write it as an expression
        items = [str(v) if v > -(2**31) else "INT32_MIN" for v in np.asarray(array.values, np.int64).reshape(-1)]
        per_line = _FLOATS_PER_LINE
    else:
        items, per_line = [c_float(v) for v in np.asarray(array.values, dtype=np.float32).reshape(-1)], _FLOATS_PER_LINE
    head = f"/* {c_comment(array.comment)} */\n" if array.comment else ""
    body = "\n".join(_lines(items, per_line))
    return f"{head}static const {array.ctype} {array.name}[{len(items)}] = {{\n{body}\n}};\n"
