"""What a compression run produces: the compressed model plus everything the report shows.

The search fills these dataclasses; the container writer, the ONNX exporter and
the report only read them. Accuracies are in percent, drops and budgets in
percentage points (0.2 = 0.2 points of top-1 accuracy), times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["LayerDecision", "SearchStep", "CompressionResult"]


@dataclass
class LayerDecision:
    """The verdict on one candidate layer.

    Attributes:
        name: module name, e.g. ``"layers.conv3"``.
        params: weight parameter count.
        binarized: whether it ended up 1-bit.
        estimator_value: the estimator's raw value (its own units).
        estimate: estimated accuracy drop from binarizing it, percentage points.
        saved_bits: storage saved if binarized (weight bits minus the scale's).
        reason: why it was kept or binarized, for people
            (e.g. ``"est. 0.41 pts > remaining budget 0.12"``).
        measured_drop: the drop measured when it was tried (points), if it was.
    """

    name: str
    params: int
    binarized: bool
    estimator_value: float | None
    estimate: float | None
    saved_bits: int
    reason: str
    measured_drop: float | None = None


@dataclass
class SearchStep:
    """One point of the search trajectory (after a change and its finetuning)."""

    index: int
    action: str  # "start", "binarize", "revert", "probe", "finetuned", "backoff", "final", "restore-input"
    layer: str | None
    selection: list[str]
    val_accuracy: float
    drop: float
    storage_bits: int
    estimates: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class CompressionResult:
    """The outcome of :func:`albsnn_compress.compress`.

    Attributes:
        model: the compressed model (binarized layers hold ``alpha * sign(W)``).
        selected: binarized layer names, in model order.
        candidates: the layers the search was allowed to binarize.
        decisions: one :class:`LayerDecision` per candidate.
        trajectory: the search's steps, in order.
        budget: allowed drop, percentage points of validation top-1 accuracy.
        accuracy: ``val_before``, ``val_after``, ``test_before``, ``test_after`` (percent;
            test entries are absent when no test split was given).
        timings: seconds per phase (``estimate``, ``search``, ``verify``, ``total``).
        finetune_epochs: training epochs the search spent finetuning.
        strategy, estimator, seed: how it was obtained.
        config: the remaining settings, JSON-able.
        finetune_slices: finetuning slices run (one per tried change, plus the final one).
    """

    model: nn.Module
    selected: list[str]
    candidates: list[str]
    decisions: list[LayerDecision]
    trajectory: list[SearchStep]
    budget: float
    accuracy: dict[str, float]
    timings: dict[str, float]
    finetune_epochs: float
    strategy: str
    estimator: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    finetune_slices: int = 0

    @property
    def val_drop(self) -> float:
        """Measured validation drop in percentage points (negative = improvement)."""
        return self.accuracy["val_before"] - self.accuracy["val_after"]
