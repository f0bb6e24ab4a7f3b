"""Text read from a file, made safe for where it is shown: one function per medium.

A model, layer, tensor, estimator or NIR node name, a reason, a path or a setting comes from a
file someone else may have written. Shown as it is, a name can drive a terminal (``ESC]0;`` sets
its title, ``ESC[2J`` clears it, bidi overrides reorder what is read: CVE-2021-42574), turn a
Markdown page into HTML with a ``<script>`` or a new heading, or end a C comment early. Every place
that shows such text passes it through the function for its medium:

* :func:`visible` (terminals, plain text, HTML text, chart labels): every control or invisible
  character (C0, DEL, C1, bidi controls, line and paragraph separators, lone surrogates, other
  characters Python does not call printable) becomes a visible Python escape such as ``\\x1b``,
  ``\\n`` or ``\\u202e``; everything else is kept, so ``conv1``, ``Größe`` and ``<script>`` read
  as they are. The result is one line and contains no character a terminal interprets; applying
  it twice changes nothing. ``rich`` must get it as a ``rich.text.Text``, never as markup.
* :func:`markdown_text` (Markdown): :func:`visible`, then every character Markdown or the HTML
  inside it would interpret is escaped: ``\\ ` * _ [ ] | ~ $ #`` with a backslash, ``&`` and ``<``
  as entities; at the start of a line also a list, heading or quote marker, and leading spaces.
* :func:`shorten` cuts text to a number of characters, for a label that must stay short.

The C export's comments use ``albsnn_compress.formats.c.text.c_comment`` (its own rules: ASCII,
no ``/*`` or ``*/``).

Example:
    >>> visible("conv\\x1b]0;owned\\x07")
    'conv\\\\x1b]0;owned\\\\x07'
    >>> markdown_text("<script>|*x*")
    '&lt;script>\\\\|\\\\*x\\\\*'
"""

from __future__ import annotations

import re

from albsnn_compress.limits import _is_control

__all__ = ["visible", "markdown_text", "shorten", "ELLIPSIS"]

ELLIPSIS = "..."

_MARKDOWN_ESCAPES = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
    "~": "\\~",
    "$": "\\$",  # GitHub renders $...$ as math
    "#": "\\#",  # an ATX heading's closing sequence, or a heading at the start of a line
    "&": "&amp;",
    "<": "&lt;",  # with every "<" escaped, a ">" closes no tag: it is escaped only where it starts a quote
}
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]|~$#&<]|(?<![^\W_])_|_(?![^\W_])")
"""One character to escape; ``_`` only where it can open or close emphasis (not between two letters or digits)."""
_BLOCK_START = re.compile(r"^(?:[-+=>]|\d+(?=[.)]))")
"""What turns a line into a list item, a setext underline, a quote or an ordered list when it starts the line."""


def _hidden(char: str) -> bool:
    return _is_control(char) or (not char.isprintable() and char != " ")


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def visible(text: str) -> str:
    """``text`` with every control or invisible character written as a visible escape (``\\x1b``, ``\\u202e``).

    The result holds no character that a terminal, a bidi algorithm or a line-based format
    interprets: no ESC, no C1 control, no bidi override, no newline. Printable text, backslashes
    included, is kept as it is, so applying it twice gives the same text.
    """
    if text.isprintable():  # the common case, at C speed: every control character is also not printable
        return text
    return "".join(_escape(char) if _hidden(char) else char for char in text)


def markdown_text(text: str, *, line_start: bool = False) -> str:
    """``text`` as literal Markdown (GitHub Flavored) inline text: :func:`visible`, then escaped.

    Args:
        text: the text to show.
        line_start: the text starts a line (a paragraph), so a leading ``-``, ``+``, ``=``, ``1.``
            or spaces, which would make a list, a heading or a code block, are escaped too.
    """
    shown = _MARKDOWN_SPECIAL.sub(lambda match: _MARKDOWN_ESCAPES.get(match.group(), "\\_"), visible(text))
    if line_start:
        stripped = shown.lstrip(" ")
        indent = "&#32;" * (len(shown) - len(stripped))  # four spaces would start a code block
        marker = _BLOCK_START.match(stripped)
        if marker is not None:  # a backslash before "-", "+", "=", ">" or "1.": literal text
            cut = marker.end() if marker.group()[0].isdigit() else 0
            stripped = stripped[:cut] + "\\" + stripped[cut:]
        shown = indent + stripped
    return shown


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS
