"""The settings of a compression run, as one small dataclass.

Kept apart from :mod:`albsnn_compress.search.run` so that the session, which reads
them, and ``compress``, which builds the session, both import it without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import precision
from albsnn_compress.search.estimators import Estimator
from albsnn_compress.search.paired_drop import check_confidence
from albsnn_compress.search.protocol import Strategy
from albsnn_compress.seeds import check_seed
from albsnn_compress.targets import TARGETS

__all__ = ["SearchConfig", "check_precisions", "check_target_name"]


def check_precisions(value: object, what: str) -> tuple[int, ...]:
    """``value`` as a sorted tuple of registered bit counts, each once.

    Raises:
        CompressionError: empty, not integers, or a bit count no precision has (naming those that do).
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise CompressionError(f"{what} must be a list of bits per weight such as [1, 8], got {value!r}")
    items = list(value)
    if not items or not all(isinstance(bits, int) and not isinstance(bits, bool) for bits in items):
        raise CompressionError(f"{what} must be a non-empty list of whole bits per weight, e.g. [1, 8]; got {value!r}")
    return tuple(sorted({precision(bits).bits for bits in items}))


def check_target_name(value: object, what: str) -> str | None:
    """``value`` as a registered target's name, or ``None`` (no target).

    Raises:
        CompressionError: not a name, or a name no target has (naming those that do).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise CompressionError(f"{what} must be a target's name such as 'loihi2', got {value!r}")
    return TARGETS.lookup(value).name


@dataclass
class SearchConfig:
    """Settings of a compression run.

    Attributes:
        strategy: ``recover`` (default: every candidate binary, the run recovers them, the
            estimates choose which return to float when the result is over budget),
            ``adaptive`` (estimator-guided trials during the run), ``oracle``, ``all``, ``none``,
            another registered name, or a strategy function
            (:data:`albsnn_compress.search.strategies.STRATEGIES`).
        estimator: ``probe`` (default: the best measured fidelity per cost, docs/method.md
            "Estimator fidelity"), ``weight``, ``output``, ``loss``, another registered name,
            or an estimator object (copied for each run; :data:`albsnn_compress.search.estimators.ESTIMATORS`).
        epochs: finetuning epochs of the whole run (the selection is decided during them);
            8 by default, what binary layers needed to recover in docs/method.md's recipe rows.
        trial_epochs: finetuning epochs of each tried change (``adaptive``) or each layer
            returned to float (``recover``).
        lr: peak learning rate of each finetuning slice (AdamW, cosine) for the float parameters;
            1e-2 by default, the best recipe row (docs/method.md, "The binary-aware recipe").
        return_lr: ``recover``: peak learning rate of the slice after a layer returns to float
            (which starts from its binarized values, so the network computes what it computed). A
            slice restarted at the run's peak rate undid the run's convergence in the study of
            docs/method.md (seed 1: every layer returned, 0.3 points became 0.9-1.2).
        binary_lr: peak learning rate of the latent weights of binarized layers (no weight
            decay on them); ``None``: ``lr``. A sign flips only when its latent weight crosses
            zero, so binary layers need larger steps than float ones to move at all
            (docs/method.md, "The binary-aware recipe").
        batch_size: global batch size.
        distill: distil from the input model (else plain cross-entropy).
        distill_weight: the distillation term's share of the loss, λ in ``(1 - λ)·CE + λ·τ²·KL``
            (0 to 1; 1 = the teacher's soft targets only).
        seed: fixes every random choice; same seed, same selection. An integer from 0 to
            :data:`~albsnn_compress.seeds.MAX_SEED` (2^32 - 1), checked whenever it is set
            (:class:`~albsnn_compress.errors.SeedError` otherwise).
        probe_batches: calibration batches the estimators run on.
        bn_batches: training batches for batch-norm re-estimation before each measurement.
        layers: candidate layer names, full (``layers.conv3``) or short (``conv3``);
            default: every binarizable layer but the first and the last.
        exclude: layer names never to binarize, full or short.
        binarize_first_last: let the first and last layers be candidates too.
        amp: bfloat16 autocast while finetuning on CUDA (ignored on CPU).
        sync_bn: under DDP, finetune with batch norm synchronised across processes.
        channels_last: finetune with 4-D weights and images in ``torch.channels_last``
            (opt-in, as ``train --channels-last``): about a fifth faster on CPU, not
            bit-identical to the default layout, so the same seed may select differently.
        extend_within: ``adaptive``: a single layer whose trial misses the budget by at
            most this multiple of the budget gets one more trial slice before it is
            rejected (a short slice overestimates what a layer finally costs).
        group_after: ``adaptive``: measurements the calibration needs before several
            layers are tried at once (a factor fitted to one point is too weak to bet
            a group on).
        confidence: ``None`` (default): accept a change when its measured validation
            drop is within the budget. A probability between 0.5 and 1 (e.g. 0.9):
            accept it only when the drop's one-sided upper confidence bound at that
            level is (exact paired interval, :mod:`albsnn_compress.search.paired_drop`), so the
            budget holds beyond the validation images with that confidence. Checked
            whenever it is set (``ValueError`` otherwise).
        precisions: the bits per weight a candidate may take, e.g. ``(1, 2, 4, 8)``
            (registered in :data:`~albsnn_compress.precision.PRECISIONS`; sorted, each once;
            checked whenever set, :class:`~albsnn_compress.errors.CompressionError` otherwise).
            ``recover`` starts every candidate at its fewest bits and raises the worst-ranked
            ones a step at a time (float above the highest) until the drop fits. With 8 bits or
            more allowed, the first and last layers become candidates for those precisions only
            (:data:`~albsnn_compress.search.candidates.FIRST_LAST_MIN_BITS`). ``(1,)`` is the
            binary-or-float search; ``adaptive`` and ``oracle`` take only that. ``None`` (default):
            the strategy's own, :func:`~albsnn_compress.search.strategies.default_precisions`
            (``(1, 2, 4, 8)`` for ``recover`` and ``all``, what the measurements in docs/method.md
            recommend; ``(1,)`` for the others); the result's ``config`` records the precisions used.
        target: ``None`` (default) or a hardware target's name
            (:data:`~albsnn_compress.targets.TARGETS`: ``loihi2``, ``xylo``, ``speck``, ``cortex-m``;
            checked whenever set). The search takes the ``precisions`` the target takes too (none:
            refused). On a target without float layers every conv and linear layer is a candidate
            (``layers`` and ``exclude`` may not leave one out), the top of a ladder is its highest
            precision instead of float, a run that misses the budget there raises
            :class:`~albsnn_compress.errors.CompressionError` instead of returning the input model,
            and only ``recover`` and ``all`` run. The result is checked with
            :func:`~albsnn_compress.targets.check_target`.
    """

    strategy: str | Strategy = "recover"
    estimator: str | Estimator = "probe"
    epochs: float = 8.0
    trial_epochs: float = 0.25
    lr: float = 1e-2
    return_lr: float = 1e-3
    binary_lr: float | None = None
    batch_size: int = 128
    distill: bool = True
    distill_weight: float = 0.5
    seed: int = 0
    probe_batches: int = 4
    bn_batches: int = 20
    layers: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    binarize_first_last: bool = False
    amp: bool = False
    sync_bn: bool = False
    channels_last: bool = False
    extend_within: float = 2.0
    group_after: int = 2
    confidence: float | None = None
    precisions: tuple[int, ...] | None = None
    target: str | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # every assignment, the dataclass __init__'s included, so a changed config is checked too
        if name == "seed":
            value = check_seed(value, "SearchConfig.seed")
        elif name == "confidence":
            value = check_confidence(value, "SearchConfig.confidence")
        elif name == "precisions" and value is not None:
            value = check_precisions(value, "SearchConfig.precisions")
        elif name == "target":
            value = check_target_name(value, "SearchConfig.target")
        elif name == "distill_weight" and not 0.0 <= value <= 1.0:
            raise ValueError(f"SearchConfig.distill_weight must be between 0 and 1, got {value!r}")
        super().__setattr__(name, value)

    def as_json(self, strategy: str, estimator: str) -> dict[str, Any]:
        """Every setting as JSON-able values, with the strategy and estimator given by name."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values.update(
            strategy=strategy,
            estimator=estimator,
            exclude=list(self.exclude),
            precisions=None if self.precisions is None else list(self.precisions),
        )
        if self.layers is not None:
            values["layers"] = list(self.layers)
        return values
