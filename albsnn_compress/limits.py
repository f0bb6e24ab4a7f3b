"""The limits every reader holds a file to, and the one place that checks them.

Whatever a file declares (a length, a shape, a name, a nesting depth) is checked
against these numbers *before* anything is allocated or parsed further, so a
hostile or damaged file is refused in well under a second and in memory close to
its own size. The container, checkpoint, NIR, dataset and report readers all ask
these functions; each passes its own error class, so the refusal names the file
kind the user gave (``ContainerError``, ``NirError``, ``DatasetError``, ...).
docs/limits.md lists every number with the reason for it.

Example:
    >>> from albsnn_compress.errors import ContainerError
    >>> element_count([3, 4], "tensor 'w'", ContainerError)
    12
    >>> element_count([1 << 40, 1 << 40], "tensor 'w'", ContainerError)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    albsnn_compress.errors.ContainerError: tensor 'w': shape [...] holds more than 268435456 elements; ...
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from albsnn_compress.errors import AlbsnnError

__all__ = [
    "MAX_ELEMENTS",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_JSON_DEPTH",
    "element_count",
    "check_name",
    "check_text",
    "regular_file_size",
]

MAX_ELEMENTS = 1 << 28
"""Elements of one array a reader may allocate (1 GiB as float32): no model or dataset split we read needs more."""

MAX_NAME_CHARS = 256
"""Characters of a name read from a file (layer, node, tensor, class, model, estimator)."""

MAX_TEXT_CHARS = 64 * 1024
"""Characters of a free-text value read from a file (a metadata entry, an embedded JSON string)."""

MAX_JSON_DEPTH = 32
"""Nesting levels of JSON read from a file (our documents nest at most 6)."""

ErrorClass = type[AlbsnnError]


def element_count(shape: Sequence[object], where: str, error: ErrorClass, limit: int = MAX_ELEMENTS) -> int:
    """The number of elements of ``shape``, refused before it exceeds ``limit``.

    Every dimension must be an ``int`` (not a ``bool``) and ``>= 0``; the product is checked as
    it grows, so dimensions whose product would wrap a 64-bit integer elsewhere are refused here.

    Raises:
        AlbsnnError: (``error``) a dimension is not a non-negative integer, or the count exceeds ``limit``.
    """
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise error(f"{where}: shape has {_short(dim)}, not a non-negative integer; the file is damaged")
        count *= dim
    if count > limit:
        shown = f"[{', '.join(_short(dim) for dim in shape)}]" if len(shape) <= 8 else f"of rank {len(shape)}"
        raise error(f"{where}: shape {shown} holds more than {limit} elements; the file is damaged or not a model")
    return count


def check_name(value: object, where: str, error: ErrorClass, limit: int = MAX_NAME_CHARS) -> str:
    """``value`` as a name: a non-empty ``str`` of at most ``limit`` characters, without control characters.

    Control characters (C0, DEL, C1) would reach terminals, Markdown and C comments from here;
    a name never needs them.

    Raises:
        AlbsnnError: (``error``) not a string, empty, too long, or holding a control character.
    """
    text = check_text(value, where, error, limit)
    if not text:
        raise error(f"{where}: an empty name; the file is damaged")
    bad = next((char for char in text if _is_control(char)), None)
    if bad is not None:
        raise error(f"{where}: the name holds the control character {bad!r}; the file is damaged or hostile")
    return text


def check_text(value: object, where: str, error: ErrorClass, limit: int = MAX_TEXT_CHARS) -> str:
    """``value`` as text: a ``str`` of at most ``limit`` characters.

    Raises:
        AlbsnnError: (``error``) not a string, or longer than ``limit``.
    """
    if not isinstance(value, str):
        raise error(f"{where}: expected text, found {type(value).__name__}; the file is damaged")
    if len(value) > limit:
        raise error(f"{where}: {len(value)} characters, more than {limit}; the file is damaged or hostile")
    return value


def regular_file_size(path: str | os.PathLike[str], what: str, error: ErrorClass, limit: int | None = None) -> int:
    """The size in bytes of ``path``, which must be a regular file (a FIFO or a device would block or never end).

    Args:
        path: the file.
        what: what the file should be, for the message ("a FashionMNIST IDX file").
        error: the error class to raise.
        limit: the largest size accepted, in bytes (``None``: any).

    Raises:
        AlbsnnError: (``error``) missing, not a regular file, unreadable, or larger than ``limit``.
    """
    shown = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError as exc:
        raise error(f"{shown}: no such file; pass {what}") from exc
    except OSError as exc:
        raise error(f"{shown}: cannot read it ({exc.strerror or exc}); pass {what}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise error(f"{shown}: not a regular file (a folder, FIFO or device); pass {what}")
    if limit is not None and status.st_size > limit:
        raise error(f"{shown}: {status.st_size} bytes, more than {what} can be ({limit} bytes); the file is damaged")
    return status.st_size


def _short(value: object) -> str:
    """``repr(value)``, or for an integer of more than 30 digits its digit count (printing a huge one can fail)."""
    if type(value) is int and value.bit_length() > 100:
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return repr(value)[:60]


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in _BIDI_CONTROLS


_BIDI_CONTROLS = frozenset({0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
"""Characters that reorder the text around them on a terminal (CVE-2021-42574, 'Trojan Source')."""
