"""Typed fields of an architecture spec: each key's default and the check its value must pass.

A layer type (:mod:`albsnn_compress.snn.layer_types`) and the neuron settings
declare their keys as :class:`Field` objects, so every number that enters a spec
is checked once, where it enters, with the key named: its type (``True`` is not
an integer, ``"nan"`` is not a number) and its range (finite, positive, ...).

Example:
    >>> KERNEL = Field(3, positive_int)
    >>> KERNEL.check(5, "layer conv1 kernel_size")
    5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from albsnn_compress.errors import SpecError

__all__ = [
    "REQUIRED",
    "Field",
    "positive_int",
    "nonnegative_int",
    "optional_positive_int",
    "boolean",
    "positive_float",
    "finite_float",
    "fraction",
    "at_least_one",
    "choice",
]

REQUIRED = object()
"""The default of a key the spec must give."""

Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Field:
    """One spec key: its ``default`` (or :data:`REQUIRED`) and the ``validate`` function its value must pass.

    ``validate(value, where)`` returns the value in canonical form (e.g. ``2`` -> ``2.0``
    for a float key) or raises :class:`SpecError` naming ``where``.
    """

    default: Any
    validate: Check

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, where: str) -> Any:
        """The canonical value of ``value`` for this key, or a :class:`SpecError` naming ``where``."""
        return self.validate(value, where)


def _is_int(value: Any) -> TypeGuard[int]:
    return type(value) is int


def _is_number(value: Any) -> TypeGuard[int | float]:
    return type(value) in (int, float)


def positive_int(value: Any, where: str) -> int:
    """An integer >= 1."""
    if not _is_int(value) or value < 1:
        raise SpecError(f"{where} must be an integer >= 1, got {value!r}")
    return value


def nonnegative_int(value: Any, where: str) -> int:
    """An integer >= 0."""
    if not _is_int(value) or value < 0:
        raise SpecError(f"{where} must be an integer >= 0, got {value!r}")
    return value


def optional_positive_int(value: Any, where: str) -> int | None:
    """``None`` or an integer >= 1."""
    return None if value is None else positive_int(value, where)


def boolean(value: Any, where: str) -> bool:
    """``true`` or ``false`` (not 0/1, not a string)."""
    if type(value) is not bool:
        raise SpecError(f"{where} must be true or false, got {value!r}")
    return value


def _number(value: Any, where: str, accept: Callable[[float], bool], wanted: str) -> float:
    """``value`` as a float if it is a finite number that ``accept`` takes, else a SpecError saying ``wanted``."""
    if not _is_number(value) or not math.isfinite(value) or not accept(float(value)):
        raise SpecError(f"{where} must be {wanted}, got {value!r}")
    return float(value)


def finite_float(value: Any, where: str) -> float:
    """Any finite number, as a float."""
    return _number(value, where, lambda _: True, "a finite number")


def positive_float(value: Any, where: str) -> float:
    """A finite number > 0, as a float."""
    return _number(value, where, lambda x: x > 0, "a finite number > 0")


def at_least_one(value: Any, where: str) -> float:
    """A finite number >= 1, as a float (a time constant: 1 means no leak)."""
    return _number(value, where, lambda x: x >= 1, "a finite number >= 1 (1 = no leak)")


def fraction(value: Any, where: str) -> float:
    """A finite number in ``(0, 1]``, as a float."""
    return _number(value, where, lambda x: 0 < x <= 1, "a number in (0, 1]")


def choice(options: tuple[str, ...]) -> Check:
    """A check that accepts exactly one of ``options``."""

    def check(value: Any, where: str) -> str:
        if value not in options or not isinstance(value, str):
            raise SpecError(f"{where} must be one of {list(options)}, got {value!r}")
        return value

    return check
