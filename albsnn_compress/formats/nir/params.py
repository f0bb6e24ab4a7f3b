"""A NIR node's parameters as checked Python and numpy values, or one :class:`NirError` naming the node and field.

:mod:`.graph_file` hands over what the file holds, within its bounds: numpy arrays of any
number type and shape (native byte order), numpy scalars, strings, and :class:`Unread`
markers for metadata values it left in the file. The reader takes every value of a file
through these helpers, which say in one line what the field holds and what it should hold.
So no other part of the reader catches ``ValueError`` or ``TypeError``: an exception from
anywhere else is a bug of ours and surfaces as itself.

Each helper takes ``where``, the prefix of its messages: :func:`node_where` for a node of a
file (``"net.nir: node 'conv1' (Conv2d)"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albsnn_compress.errors import NirError, one_line

__all__ = [
    "NUMBER_KINDS",
    "Unread",
    "as_array",
    "bias_vector",
    "finite_floats",
    "int_pair",
    "integer",
    "integers",
    "metadata_flag",
    "metadata_of",
    "metadata_scalar",
    "node_where",
    "square",
    "weight_array",
]


@dataclass(frozen=True)
class Unread:
    """A metadata value :mod:`.graph_file` left in the file: too big (or not text) to be a value our reader uses.

    Attributes:
        what: what the file holds (``"float32 [268435456]"``, ``"text"``).
        reason: why it was not kept.
    """

    what: str
    reason: str

    def __str__(self) -> str:
        return f"({self.what}, not read: {self.reason})"


def node_where(path: Path, name: str, node: Any) -> str:
    """The prefix of a message about one node: ``"{path}: node {name!r} ({type})"``."""
    return f"{path}: node {name!r} ({type(node).__name__})"


def as_array(value: Any, where: str, label: str) -> np.ndarray:
    """``np.asarray(value)`` in native byte order; a value numpy cannot make an array of (ragged, an odd object) and a
    metadata value the reader left in the file (:class:`Unread`) are refused."""
    if isinstance(value, Unread):
        raise NirError(f"{where}: {label} is {value}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # what numpy raises for a value it cannot make an array of
        raise NirError(f"{where}: {label} is not an array ({one_line(exc, 120)})") from exc
    if array.dtype.byteorder not in "=|":  # a big-endian array of a graph built in memory
        array = array.astype(array.dtype.newbyteorder("="))
    return array


NUMBER_KINDS = "iuf"
"""numpy kinds of the arrays a parameter may be: signed and unsigned integers, floats (not bool ``b``, complex ``c``,
objects ``O``, strings or records)."""


def _shown(array: np.ndarray) -> str:
    return f"{array.dtype} of shape {list(array.shape)}"


def finite_floats(value: Any, where: str, label: str) -> np.ndarray:
    """``value`` as a float64 array of finite numbers (any shape); bools, complex numbers and objects are refused."""
    array = as_array(value, where, label)
    if array.dtype.kind not in NUMBER_KINDS:
        raise NirError(f"{where}: {label} must be numbers, got {_shown(array)}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise NirError(f"{where}: {label} holds NaN or infinite values")
    return array


def weight_array(value: Any, where: str, label: str, ndim: int) -> np.ndarray:
    """``value`` as a float32 array of ``ndim`` dimensions, every value finite in float32.

    Integer and floating-point types of either byte order are numbers; bool, complex, object, enum and compound
    types are not (a bool weight is no weight: which value would ``True`` be?)."""
    array = as_array(value, where, label)
    if array.dtype.kind not in NUMBER_KINDS or array.dtype.fields is not None or array.ndim != ndim:
        raise NirError(f"{where}: {label} must be a {ndim}-d array of integers or floats, got {_shown(array)}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused just below
        array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise NirError(f"{where}: {label} holds NaN or infinite values (in float32)")
    return array


def bias_vector(value: Any, channels: int, where: str) -> np.ndarray:
    """A bias of ``channels`` finite float32 values."""
    array = as_array(value, where, "bias")
    if array.shape != (channels,):
        raise NirError(f"{where}: bias must have shape [{channels}], got {list(array.shape)}")
    return weight_array(array, where, "bias", 1)


def integers(value: Any, where: str, label: str) -> np.ndarray:
    """A scalar or a 1-d list of integers, as a 1-d array (float values that are all whole numbers count)."""
    if isinstance(value, (str, bytes)):
        raise NirError(f"{where}: {label} {value!r}: only integer sizes are supported")
    array = as_array(value, where, label)
    if array.ndim > 1:
        raise NirError(f"{where}: {label} must be a number or a list of numbers, got shape {list(array.shape)}")
    array = array.reshape(-1)
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        return array
    raise NirError(f"{where}: {label} {one_line(array.tolist(), 80)} is not integers")


def int_pair(value: Any, where: str, label: str) -> tuple[int, int]:
    """A size argument (one value or two) as two non-negative ints."""
    array = integers(value, where, label)
    if array.size == 1:
        array = np.repeat(array, 2)
    if array.size != 2 or (array < 0).any():
        raise NirError(f"{where}: {label} {array.tolist()} must be one or two non-negative integers")
    return int(array[0]), int(array[1])


def integer(value: Any, where: str, label: str) -> int:
    """A single integer (a scalar or a one-element array)."""
    array = integers(value, where, label)
    if array.size != 1:
        raise NirError(f"{where}: {label} must be one integer, got {one_line(array.tolist(), 80)}")
    return int(array[0])


def square(pair: tuple[int, ...], where: str, label: str) -> int:
    """The side of a square ``pair`` (kernel, stride, padding); ours are square."""
    if len(pair) != 2 or pair[0] != pair[1]:
        raise NirError(f"{where}: {label} {list(pair)} differs by axis; only square ones are supported")
    return pair[0]


def metadata_of(node: Any, ours: bool) -> Mapping[str, Any]:
    """A node's (or graph's) metadata when our writer made the file; ``{}`` otherwise (other writers' keys mean nothing
    here)."""
    metadata = getattr(node, "metadata", None)
    return metadata if ours and isinstance(metadata, Mapping) else {}


def metadata_scalar(metadata: Mapping[str, Any], key: str) -> int | float | str | None:
    """One scalar our writer recorded: a string, or a number (Python or numpy scalar, or a one-element array).
    ``None`` when the key is absent or holds anything else (a longer array, a bool, a nested group)."""
    value = metadata.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a graph built in memory; np.float64 too
        return float(value) if isinstance(value, float) else int(value)
    if not isinstance(value, (np.ndarray, np.generic)) or value.size != 1 or value.dtype.kind not in "iuf":
        return None
    number = value.reshape(-1)[0].item()
    return number if isinstance(number, (int, float)) else None


def metadata_flag(metadata: Mapping[str, Any], key: str) -> int | str | None:
    """A marker our writer recorded on a node (``albsnn_role``, ``albsnn_binary``...): a string or an integer."""
    value = metadata_scalar(metadata, key)
    return None if isinstance(value, float) else value
