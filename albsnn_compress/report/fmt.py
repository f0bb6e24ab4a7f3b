"""How figures are written, shared by every form so the terminal, Markdown and HTML agree.

Sizes use binary units (1 KiB = 1024 bytes); accuracies are percent, drops and
budgets percentage points ("pts"); a missing figure is ``n/a``, one that does
not apply is ``-``. Text read from the report (names, reasons, settings) comes out through
:func:`~albsnn_compress.files.safe_text.visible`: one line, no control character.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from albsnn_compress.files.safe_text import visible

__all__ = [
    "MISSING",
    "NOT_APPLICABLE",
    "count",
    "size",
    "exact_bytes",
    "percent",
    "points",
    "ratio",
    "seconds",
    "number",
    "operations",
    "energy",
    "rate",
    "change",
    "short",
    "text",
    "shape",
    "names",
    "estimates",
    "raw_estimates",
    "setting",
    "headline",
]

MISSING = "n/a"
NOT_APPLICABLE = "-"
_UNITS = ("KiB", "MiB", "GiB", "TiB")


def count(n: int | None) -> str:
    """An integer with thousands separators: ``147,456``."""
    return MISSING if n is None else f"{n:,}"


def size(nbytes: float | None) -> str:
    """Bytes in binary units: ``4.5 B``, ``18.00 KiB``, ``1.25 MiB``."""
    if nbytes is None:
        return MISSING
    if abs(nbytes) < 1024:
        return f"{nbytes:g} B"
    value = float(nbytes)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.2f} {unit}"


def exact_bytes(nbytes: float | None) -> str:
    """Exact bytes with thousands separators: ``12,345 B``, ``4.5 B`` (bits / 8 may end in eighths)."""
    if nbytes is None:
        return MISSING
    if float(nbytes).is_integer():
        return f"{int(nbytes):,} B"
    return f"{nbytes:,.3f}".rstrip("0") + " B"


def percent(value: float | None) -> str:
    """An accuracy or share in percent: ``97.22%``."""
    return MISSING if value is None else f"{value:.2f}%"


def points(value: float | None) -> str:
    """Percentage points: ``0.15 pts`` (a negative drop is an improvement)."""
    return MISSING if value is None else f"{value:.2f} pts"


def interval(bounds: Sequence[float] | None) -> str:
    """A confidence interval of a drop in points: ``[-0.32, +0.28] pts``."""
    return MISSING if bounds is None else f"[{bounds[0]:+.2f}, {bounds[1]:+.2f}] pts"


def ratio(value: float | None) -> str:
    """A compression ratio, before / after: ``26.18×``."""
    return MISSING if value is None else f"{value:.2f}×"


def seconds(value: float | None) -> str:
    """Wall time: ``12.3 s``."""
    return MISSING if value is None else f"{value:.1f} s"


def number(value: float | None) -> str:
    """An estimator value in its own units, four significant digits."""
    return NOT_APPLICABLE if value is None else f"{value:.4g}"


def operations(value: float | None) -> str:
    """Operations per inference (an average over images): ``1,234,567``; below 100 and not whole, three significant
    digits (``72.3``); from 1e15 on, ``1.235e+15``."""
    if value is None:
        return MISSING
    if not math.isfinite(value):  # only in a document built in memory
        return str(value)
    if abs(value) >= 1e15:
        return f"{value:.3e}"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{round(value):,}"
    return f"{value:.3g}"


_ENERGY_UNITS = (("J", 1e12), ("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3), ("pJ", 1.0))


def energy(picojoules: float | None) -> str:
    """An energy given in picojoules, in the largest unit that keeps it at 1 or more: ``326.70 pJ``, ``1.23 µJ``."""
    if picojoules is None:
        return MISSING
    if not math.isfinite(picojoules):
        return f"{picojoules} pJ"
    for unit, scale in _ENERGY_UNITS:
        if abs(picojoules) >= scale or unit == "pJ":
            return f"{picojoules / scale:.2f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def rate(fraction: float | None) -> str:
    """A fraction (a spike rate) in percent: ``12.50%``."""
    return MISSING if fraction is None else percent(100 * fraction)


def change(before: Any, after: Any, form: Callable[[Any], str]) -> str:
    """``before -> after``, each written by ``form``; one figure when both read the same."""
    first, second = form(before), form(after)
    return first if first == second else f"{first} -> {second}"


def text(value: str) -> str:
    """Text read from the report (a name, a reason, a path), shown on one line with every control character escaped."""
    return visible(value)


def short(name: str) -> str:
    """A layer name without the ``layers.`` prefix every SpikingNet layer has, control characters escaped."""
    return visible(name.removeprefix("layers."))


def shape(dims: list[int]) -> str:
    """``32×16×3×3``."""
    return "×".join(str(d) for d in dims) if dims else NOT_APPLICABLE


def names(layers: list[str], limit: int | None = None) -> str:
    """Short layer names, comma separated; ``(none)`` for an empty list; beyond ``limit`` names, ``(+N more)``."""
    if not layers:
        return "(none)"
    shown = ", ".join(short(name) for name in layers[:limit])
    return shown + _more(len(layers), limit)


def estimates(values: Mapping[str, float | None], limit: int | None = None) -> str:
    """Per-layer estimates in points: ``conv2 0.12, conv3 0.30``; beyond ``limit`` layers, ``(+N more)``."""
    if not values:
        return NOT_APPLICABLE
    items = list(values.items())[:limit]
    shown = ", ".join(f"{short(k)} {NOT_APPLICABLE if v is None else f'{v:.2f}'}" for k, v in items)
    return shown + _more(len(values), limit)


def raw_estimates(values: Mapping[str, float | None], limit: int | None = None) -> str:
    """Per-layer raw estimator values, four significant digits: ``conv2 0.3712, conv3 0.4``; beyond ``limit``,
    ``(+N more)``."""
    if not values:
        return NOT_APPLICABLE
    shown = ", ".join(f"{short(k)} {number(v)}" for k, v in list(values.items())[:limit])
    return shown + _more(len(values), limit)


def _more(count: int, limit: int | None) -> str:
    return f", ... (+{count - limit} more)" if limit is not None and count > limit else ""


def setting(value: Any) -> str:
    """A config value: strings as they are (control characters escaped), anything else as compact ASCII JSON."""
    return visible(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)


def headline(report: Mapping[str, Any]) -> str:
    """One sentence with the result: sizes, ratio, saving, accuracy and budget."""
    computed = report["storage"]["computed"]
    acc = report["accuracy"]
    model = report["model"]
    steps = f", T={model['timesteps']}" if model["timesteps"] is not None else ""
    verdict = "within budget" if acc["within_budget"] else "OVER budget"
    return (
        f"{visible(model['name'])}{steps}: "
        f"{size(computed['bytes_before'])} -> {size(computed['bytes_after'])} computed "
        f"({ratio(computed['ratio'])}, {percent(computed['saved_percent'])} saved); "
        f"val accuracy {percent(acc['val_before'])} -> {percent(acc['val_after'])} "
        f"(drop {points(acc['val_drop_points'])}, budget {points(report['search']['budget_points'])}, {verdict})"
    )
