r"""The accuracy drop between two models on the same images, with an exact confidence interval.

Two models answered the same ``n`` images. Only the images on which they
disagree about correctness move the drop: ``lost`` (right before, wrong after)
and ``gained`` (wrong before, right after). The drop in percentage points is

.. math::  \Delta = 100 \, (\text{lost} - \text{gained}) / n .

**The interval is exact, conditional on the number of discordant images**
``d = lost + gained`` (the exact McNemar interval). Given ``d``, ``lost`` is
binomial with ``d`` trials and an unknown share ``p``, and
:math:`\Delta = 100 \, d \, (2p - 1) / n`, so the Clopper-Pearson interval
for ``p`` maps one-to-one to an interval for the drop. Why this and not a
normal approximation or a bootstrap:

* a tight budget is a handful of images (0.2 points of 6,000 is 12), where the
  normal approximation is wrong and a bootstrap's tails are rough;
* it is deterministic: no resampling seed, so a report is byte-identical run to run;
* it never undercovers (Clopper-Pearson is conservative), which is the side
  to err on when the bound guards a budget.

With no discordant image the two models agree everywhere and the interval is
the point ``[0, 0]``. Units: every ``*_points`` value is percentage points of
top-1 accuracy; ``confidence`` is a probability (0.9, not 90).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from albsnn_compress.errors import BudgetError

__all__ = [
    "PairedDrop",
    "REPORTED_CONFIDENCE",
    "INTERVAL_METHOD",
    "paired_drop",
    "binomial_upper_bound",
    "binomial_lower_bound",
    "check_confidence",
    "TYPICAL_CHANGED_FRACTION",
    "resolvable_points",
    "images_to_resolve",
    "unresolvable_budget",
    "MAX_VAL_SHARE",
    "val_share_to_resolve",
]

TYPICAL_CHANGED_FRACTION = 0.028
"""Share of answers one epoch of finetuning changes with nothing binarized: 2.82 % measured on
FashionMNIST's validation split with the committed fmnist-vgg checkpoint (issue 16). It sizes the
interval a search can expect before it has measured anything."""

REPORTED_CONFIDENCE = 0.95
"""The two-sided level of the interval reports show beside every drop."""

INTERVAL_METHOD = "exact paired: Clopper-Pearson on the changed images, conditional on their count"
"""How the interval is computed, as reports name it."""

_BISECTIONS = 64  # halvings of [0, 1]: far below float64 resolution of p


def check_confidence(confidence: object, where: str = "confidence") -> float | None:
    """A one-sided confidence level strictly between 0.5 and 1, or ``None`` (decide on the point drop).

    Raises:
        BudgetError: naming ``where``, the value and the expected form (it qualifies the budget).
    """
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 < float(confidence) < 1.0:
        raise BudgetError(f"{where} must be a probability between 0.5 and 1 (e.g. 0.9), got {confidence!r}")
    return float(confidence)


_TAIL_SPREADS = 40.0  # a term this many standard deviations below the mean is below exp(-800) of the largest
_TAIL_TERMS = 1000  # and this many more cover the tails of a binomial with almost no spread


def _binomial_cdf(successes: int, trials: int, p: float) -> float:
    """P(X <= successes) for X ~ Binomial(trials, p), summed in log space (exact to float64).

    Only the terms within :data:`_TAIL_SPREADS` standard deviations (plus :data:`_TAIL_TERMS`)
    below ``successes`` or the mean are summed: the ones further down underflow float64 next to
    the largest, and skipping them keeps a bound over millions of images to milliseconds.
    """
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if successes >= trials else 0.0
    spread = math.sqrt(trials * p * (1.0 - p))
    first = max(0, math.floor(min(successes, trials * p) - _TAIL_SPREADS * spread) - _TAIL_TERMS)
    k = torch.arange(first, successes + 1, dtype=torch.float64)
    log_pmf = (
        math.lgamma(trials + 1)
        - torch.lgamma(k + 1)
        - torch.lgamma(trials - k + 1)
        + k * math.log(p)
        + (trials - k) * math.log1p(-p)
    )
    return float(torch.logsumexp(log_pmf, dim=0).exp().clamp(max=1.0))


def binomial_upper_bound(successes: int, trials: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial share ``p`` at ``confidence``.

    The ``p`` at which seeing ``successes`` or fewer has probability ``1 - confidence``;
    1 when every trial succeeded (and when there are none).
    """
    if successes >= trials:
        return 1.0
    low, high = successes / trials, 1.0  # the CDF falls with p; the bound is above the observed share
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if _binomial_cdf(successes, trials, middle) > 1.0 - confidence:
            low = middle
        else:
            high = middle
    return high


def binomial_lower_bound(successes: int, trials: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound; by symmetry one minus the failures' upper bound."""
    return 1.0 - binomial_upper_bound(trials - successes, trials, confidence)


@dataclass(frozen=True)
class PairedDrop:
    """The drop from a reference model to another on the same ``images``.

    Attributes:
        images: images both models answered.
        lost: images the reference got right and the other got wrong.
        gained: images the reference got wrong and the other got right.
    """

    images: int
    lost: int
    gained: int

    @property
    def points(self) -> float:
        """The drop, percentage points (negative: the other model is better)."""
        return 100.0 * (self.lost - self.gained) / self.images

    @property
    def resolution_points(self) -> float:
        """What one image is worth, percentage points."""
        return 100.0 / self.images

    @property
    def changed(self) -> int:
        """Images whose correctness changed (``lost + gained``)."""
        return self.lost + self.gained

    def _drop_at(self, share_lost: float) -> float:
        return 100.0 * self.changed * (2.0 * share_lost - 1.0) / self.images

    def upper_bound(self, confidence: float) -> float:
        """One-sided upper confidence bound of the drop, points: the drop is below it with ``confidence``."""
        if self.changed == 0:
            return 0.0
        return self._drop_at(binomial_upper_bound(self.lost, self.changed, confidence))

    def lower_bound(self, confidence: float) -> float:
        """One-sided lower confidence bound of the drop, points."""
        if self.changed == 0:
            return 0.0
        return self._drop_at(binomial_lower_bound(self.lost, self.changed, confidence))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Two-sided interval of the drop at ``confidence``, points (each tail ``(1 - confidence) / 2``)."""
        one_sided = 1.0 - (1.0 - confidence) / 2
        return self.lower_bound(one_sided), self.upper_bound(one_sided)

    def judged(self, confidence: float | None) -> float:
        """The drop a decision compares with the budget: the point value, or its upper bound at ``confidence``."""
        return self.points if confidence is None else self.upper_bound(confidence)


def paired_drop(correct_before: torch.Tensor, correct_after: torch.Tensor) -> PairedDrop:
    """Count lost and gained images from two per-image correctness vectors (same images, same order).

    Raises:
        ValueError: the vectors differ in length or are empty.
    """
    before, after = correct_before.bool().flatten(), correct_after.bool().flatten()
    if before.numel() != after.numel() or before.numel() == 0:
        raise ValueError(
            f"paired outcomes need two equal, non-empty vectors, got {before.numel()} and {after.numel()} images"
        )
    lost = int((before & ~after).sum())
    gained = int((~before & after).sum())
    return PairedDrop(images=int(before.numel()), lost=lost, gained=gained)


def resolvable_points(images: int, confidence: float, changed_fraction: float = TYPICAL_CHANGED_FRACTION) -> float:
    """The one-sided bound's margin above a zero drop when ``changed_fraction`` of ``images`` change, points.

    A search's measurement cannot confirm a budget below this: even a model with
    no drop at all has an upper bound this high.
    """
    changed = max(1, round(changed_fraction * images))
    half = changed // 2
    return PairedDrop(images, changed - half, half).upper_bound(confidence)


def images_to_resolve(budget: float, confidence: float, limit: int = 10**8) -> int:
    """The fewest validation images whose :func:`resolvable_points` margin is within ``budget`` (at most ``limit``).

    The margin shrinks as images grow (about as one over their square root), so a doubling
    search brackets the answer and a bisection finds it.
    """
    if budget <= 0:
        return limit
    high = 64
    while high < limit and resolvable_points(high, confidence) > budget:
        high *= 2
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if resolvable_points(middle, confidence) <= budget else (middle, high)
    return min(high, limit)


MAX_VAL_SHARE = 0.5
"""The largest validation share the tool chooses by itself: beyond half the training images the
model would lose more to the smaller training split than the decisions gain."""

_SHARE_STEP = 0.01  # chosen shares are rounded up to whole percent


def val_share_to_resolve(budget: float, training_images: int, confidence: float | None = None) -> float | None:
    """The validation share (a fraction, whole percent, rounded up) of ``training_images`` that resolves ``budget``.

    The split must hold :func:`images_to_resolve` images at ``confidence`` (``None``,
    point decisions, judged at 0.9 as in :func:`unresolvable_budget`). ``None`` when that
    takes more than :data:`MAX_VAL_SHARE` of the images, or the budget is 0.
    """
    if budget <= 0 or training_images <= 0:
        return None
    needed = images_to_resolve(budget, confidence if confidence is not None else 0.9)
    share = math.ceil(needed / training_images / _SHARE_STEP - 1e-9) * _SHARE_STEP
    return round(share, 2) if share <= MAX_VAL_SHARE else None


def unresolvable_budget(
    budget: float, images: int, confidence: float | None, training_images: int | None = None
) -> str | None:
    """One line saying the validation split cannot confirm ``budget`` at ``confidence``, or ``None``.

    ``confidence`` ``None`` (point decisions) is judged at 0.9, the level a careful
    reading of the result would use. With ``training_images`` (train and validation
    together) the line names the ``train --val-share`` that would resolve the budget.
    """
    level = confidence if confidence is not None else 0.9
    margin = resolvable_points(images, level)
    if budget <= 0 or budget >= margin:
        return None
    consequence = (
        "--confidence will likely keep every layer in float"
        if confidence is not None
        else "a measured drop within the budget may not hold on unseen data (see --confidence)"
    )
    return (
        f"budget {budget:g} points is below what {images} validation images can confirm: with "
        f"{100 * TYPICAL_CHANGED_FRACTION:.1f} % of answers changed (typical of finetuning) the drop's "
        f"{100 * level:g} % upper bound lies {margin:.2f} points above the measured drop; {consequence}; "
        f"confirming it takes about {images_to_resolve(budget, level):,} validation images the model never trained on"
        f"{_share_hint(budget, training_images, confidence)}"
    )


def _share_hint(budget: float, training_images: int | None, confidence: float | None) -> str:
    """`` (train with --val-share S holds them out)`` when a share of at most :data:`MAX_VAL_SHARE` does."""
    share = val_share_to_resolve(budget, training_images, confidence) if training_images else None
    return f" (train with --val-share {share:g} to hold them out)" if share is not None else ""
