"""The accuracy budget: what is refused, what is warned about, and how a string is read.

A budget is the validation top-1 accuracy a run may lose, in **percentage
points** (``0.2`` = 0.2 points; accuracy itself is a percentage, so 100 points is
all of it).

* Refused (:class:`BudgetError`): anything but a finite number from 0 to 100; a
  string that is not a plain decimal (``0.2``, ``1``, ``.5``, ``10.``): Python's
  ``float()`` would also read ``1_0`` as 10, ``1e-1``, ``nan``, ``+inf``, spaces
  and non-ASCII digits.
* Warned about (:class:`BudgetWarning`, once the validation split is known): a
  budget above 0 but below what the split can resolve. One image of ``n`` is
  ``100 / n`` points, so a smaller budget allows no image to be lost: the same
  as ``0``: a typo, a fraction typed where points were meant (0.002 for 0.2
  points), or a split too small for the budget. Below 0.01 the warning adds that
  a budget is not a fraction. Nothing is warned about by a fixed threshold alone:
  a 50,000-image split resolves 0.002 points, and there such a budget is meaningful.
"""

from __future__ import annotations

import math
import re
from typing import Any

from albsnn_compress.errors import BudgetError

__all__ = [
    "MAX_BUDGET",
    "FRACTION_HINT_BELOW",
    "BudgetWarning",
    "check_budget",
    "budget_resolution",
    "implausible_budget",
]

MAX_BUDGET = 100.0
FRACTION_HINT_BELOW = 0.01  # below this, the warning adds that a budget is not a fraction
_PLAIN_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_SHOWN = 40  # characters of a refused string kept in the message


class BudgetWarning(UserWarning):
    """A budget that is allowed but probably not what was meant (the command line prints it as one line)."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def check_budget(budget: Any) -> float:
    """A budget in percentage points: a finite number from 0 to :data:`MAX_BUDGET` (100).

    Args:
        budget: a number, or a string holding a plain decimal (what ``--budget`` passes).

    Raises:
        BudgetError: naming the bad value and the expected form.

    Example:
        >>> check_budget("0.2")
        0.2
    """
    if isinstance(budget, str):
        text = budget
        if _PLAIN_DECIMAL.fullmatch(text) is None:
            if text.startswith("-") and _PLAIN_DECIMAL.fullmatch(text[1:]):
                raise BudgetError(
                    f"budget {_shown(text)} must be a finite number >= 0 (percentage points of top-1 accuracy)"
                )
            raise BudgetError(
                f"budget {_shown(text)} is not a number in plain decimal form; pass percentage points as digits "
                "with an optional decimal point, e.g. --budget 0.2"
            )
        value = float(text)
    else:
        try:
            if isinstance(budget, (bool, bytes, bytearray)):
                raise TypeError(type(budget).__name__)
            value = float(budget)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BudgetError(f"budget {budget!r} is not a number; pass percentage points, e.g. --budget 0.2") from exc
        if not math.isfinite(value) or value < 0:
            raise BudgetError(f"budget {budget!r} must be a finite number >= 0 (percentage points of top-1 accuracy)")
    if value > MAX_BUDGET:
        raise BudgetError(
            f"budget {_shown(budget) if isinstance(budget, str) else repr(budget)} is more than {MAX_BUDGET:g} "
            "percentage points, all of top-1 accuracy; "
            "pass points, e.g. --budget 0.2 to lose at most 0.2 points"
        )
    return value


def budget_resolution(val_images: int) -> float:
    """The accuracy, in percentage points, of one image of a validation split of ``val_images``."""
    return 100.0 / val_images if val_images > 0 else math.inf


def implausible_budget(budget: float, val_images: int) -> str | None:
    """Why ``budget`` is probably a mistake on a validation split of ``val_images``, or ``None``.

    The one case: ``0 < budget < 100 / val_images``, a budget that allows no image
    to be lost (see the module docstring).
    """
    resolution = budget_resolution(val_images)
    if not 0 < budget < resolution:
        return None
    message = (
        f"budget {budget:g} points is below what the validation split resolves (one image of {val_images} is "
        f"{resolution:.3g} points), so it allows no image to be lost, like --budget 0"
    )
    if budget < FRACTION_HINT_BELOW:
        message += "; a budget is in percentage points (0.2 = 0.2 points), not a fraction"
    return message
