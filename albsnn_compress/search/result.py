"""What a compression run produces: the compressed model plus everything the report shows.

The search fills these dataclasses; the container writer, the ONNX exporter and
the report only read them. Units are in the names where a figure could be read
two ways: ``*_points`` are percentage points of top-1 accuracy (0.2 = 0.2
points), ``*_raw`` an estimator's own unit, ``*_bits`` bits. Accuracies are in
percent, times in seconds. "Binarized" is the one word for a layer stored at
1 bit, in every field that lists or flags such layers; ``bits`` and ``precisions``
give every layer's bits per weight (1, 2, 4, 8; 32 is float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from albsnn_compress.precision import FLOAT_BITS
from albsnn_compress.search.paired_drop import PairedDrop

__all__ = ["ACTIONS", "LayerDecision", "SearchStep", "CompressionResult"]

ACTIONS = {
    "start": "the input model, measured",
    "binarize": "layers binarized (or set to their fewest allowed bits) and kept (adaptive: after their trial slice)",
    "revert": "layers tried and returned to float: their trial missed the budget",
    "probe": "oracle: one layer binarized alone, finetuned and measured (reverted right after)",
    "finetuned": "a slice that only finetuned, then measured",
    "final": "the selection after the last finetuning, measured",
    "backoff": "a layer returned to float (or raised to its next precision), finetuned and measured",
    "restore-input": "over budget with every candidate in float: the input model is returned",
}
"""The trajectory's actions and what each step records; a strategy of your own may add others."""


@dataclass
class LayerDecision:
    """The verdict on one candidate layer.

    Attributes:
        name: module name, e.g. ``"layers.conv3"``.
        params: weight parameter count.
        binarized: whether it ended up 1-bit.
        estimate_raw: the estimator's raw value (its own unit) when it was decided, if estimated.
        estimate_points: that value in percentage points with the calibration as it stood
            when the layer was decided (``None`` before the first measurement).
        saved_bits: storage saved if binarized (weight bits minus the scale's).
        reason: why it was kept or binarized, for people
            (e.g. ``"est. 0.41 pts > remaining budget 0.12"``).
        measured_alone_points: the drop measured with this layer binarized alone
            (``oracle``), percentage points.
        measured_increment_points: the increase of the drop when the group this layer
            was tried in was binarized (``adaptive``; the whole group's increment),
            percentage points.
        bits: its bits per weight after this verdict (1 when ``binarized``; 2, 4, 8; 32 for float);
            ``None`` given: 1 or 32 from ``binarized``.
    """

    name: str
    params: int
    binarized: bool
    estimate_raw: float | None
    estimate_points: float | None
    saved_bits: int
    reason: str
    measured_alone_points: float | None = None
    measured_increment_points: float | None = None
    bits: int | None = None

    def __post_init__(self) -> None:
        if self.bits is None:
            self.bits = 1 if self.binarized else FLOAT_BITS


@dataclass
class SearchStep:
    """One point of the search trajectory (after a change and its finetuning).

    Attributes:
        index: position in the trajectory.
        action: what happened (see :data:`ACTIONS`).
        layers: the layers the step changed or tried (a group in the order it was ranked); empty when none.
        binarized: every binarized layer after the step.
        precisions: every layer below float after the step, with its bits per weight (1-bit ones too).
        val_accuracy: validation top-1 accuracy after the step, percent.
        drop_points: validation drop against the input model, percentage points.
        storage_bits: computed storage of the model after the step.
        estimates_points: calibrated estimate per layer the step weighed (``None``
            before the first measurement), percentage points.
        estimates_raw: the estimator's raw values behind them, its own unit.
        seconds: wall time since the search started.
        paired: the measurement behind ``drop_points``, image by image against the input
            model (images lost and gained; ``None`` where a session does not count them).
    """

    index: int
    action: str
    layers: list[str]
    binarized: list[str]
    val_accuracy: float
    drop_points: float
    storage_bits: int
    estimates_points: dict[str, float | None] = field(default_factory=dict)
    estimates_raw: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    paired: PairedDrop | None = None
    precisions: dict[str, int] = field(default_factory=dict)


@dataclass
class CompressionResult:
    """The outcome of :func:`albsnn_compress.search.run.compress`.

    Attributes:
        model: the compressed model (binarized layers hold ``alpha * sign(W)``).
        binarized: binarized layer names, in model order.
        precisions: every layer below float, with its bits per weight (1-bit ones too), in model order.
        candidates: the layers the search was allowed to binarize.
        decisions: one :class:`LayerDecision` per candidate.
        trajectory: the search's steps, in order.
        budget: allowed drop, percentage points of validation top-1 accuracy.
        accuracy: ``val_before``, ``val_after``, ``test_before``, ``test_after`` (percent;
            test entries are absent when no test split was given).
        timings: seconds per phase (``estimate``, ``finetune``, ``measure``, ``total``).
        finetune_epochs: training epochs the search spent finetuning.
        strategy, estimator, seed: how it was obtained (names).
        config: every setting, JSON-able (strategy and estimator as names).
        finetune_slices: finetuning slices run (one per tried change, plus the final one).
        paired: the final model against the input, image by image, per split (``val``, and
            ``test`` when given): images lost and gained, from which the drop's confidence
            interval follows (:class:`~albsnn_compress.search.paired_drop.PairedDrop`).
        control: a float copy of the input finetuned like the run, against the input on the
            validation split, when the strategy ran one (``recover`` does when the run ends over
            budget): what finetuning alone cost, which no choice of layers can undo.
    """

    model: nn.Module
    binarized: list[str]
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
    paired: dict[str, PairedDrop] = field(default_factory=dict)
    control: PairedDrop | None = None
    precisions: dict[str, int] = field(default_factory=dict)

    @property
    def val_drop(self) -> float:
        """Measured validation drop in percentage points (negative = improvement)."""
        return self.accuracy["val_before"] - self.accuracy["val_after"]
