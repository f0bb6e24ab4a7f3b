"""Train with adaptive binarization, ALBSNN's own mode: what ``albsnn-compress train --binarize adaptive`` runs.

The paper binarizes layers *during learning*, choosing by accuracy-loss estimators
which layers can afford 1-bit weights, the first and last layer kept in float. Here
that is two stages of one run of ``epochs``:

1. **Float warm-up**: the first ``warmup_share`` of the epochs train the float network
   with ``train``'s own recipe (:func:`~albsnn_compress.training.train_model.train_model`:
   the same :class:`~albsnn_compress.training.trainer.TrainConfig`, AdamW and a cosine
   schedule over the warm-up epochs).
2. **Binarization during the remaining epochs**: the warm model goes to the compression
   search (:func:`~albsnn_compress.search.run.compress`) with
   ``SearchConfig(epochs=<the remaining epochs>, seed=<the train seed>, precisions=(1,))`` (1 bit or
   float per layer, as the paper decides) and the run's
   batch size, AMP, sync-BN and channels-last settings (everything else the search's
   defaults; the strategy the search's default unless one is named). The search decides,
   by its estimators and paired measurements, which candidate layers (all binarizable
   layers but the first and the last) are binarized while it finetunes, distilling from
   the warm model. The budget is a drop in percentage points of validation top-1 accuracy
   *relative to the warm float model* (the model after stage 1) on the validation split.
   That split is sized for the budget: unless ``val_share`` is given, it holds out the share
   of the training images that resolves the budget
   (:func:`~albsnn_compress.search.paired_drop.val_share_to_resolve`: 23 % of FashionMNIST's
   60,000 for 0.2 points, never less than the default 10 % nor more than half), recorded
   in the checkpoint as ``val_share`` so that ``compress`` decides on the same held-out images.

The output is a ``model.pt`` checkpoint, like ``train``'s
(:func:`~albsnn_compress.checkpoint.save_checkpoint` records the binarized layers, their
weights as ``alpha * sign(W)``), so ``eval``, ``compress`` and
:func:`~albsnn_compress.checkpoint.load_checkpoint` read it like any other checkpoint,
and ``compress`` turns it into the ``.albsnn`` container, ONNX file and report
(``--strategy none`` packs it as it is). Its metadata holds what ``train`` writes (with the
whole run's ``train_config`` and the warm-up's per-epoch ``history``) plus a
``binarization`` record: the budget, the epoch split, the warm model's accuracies, the
search's settings, candidates, binarized layers, one decision per candidate with its
reason, and the search's trajectory (wall times left out, so the same seed on the same
machine writes the same bytes, as ``train`` does).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import torch

from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.registry import VAL_FRACTION, check_val_share, load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.files.output_paths import check_output_file, writing
from albsnn_compress.progress import ProgressCallback, ProgressEvent
from albsnn_compress.search.budget import check_budget
from albsnn_compress.search.candidates import resolve_candidates
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.paired_drop import val_share_to_resolve
from albsnn_compress.search.protocol import Strategy
from albsnn_compress.search.result import CompressionResult, SearchStep
from albsnn_compress.search.run import compress
from albsnn_compress.search.strategies import resolve_strategy
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.train_model import TrainRequest, TrainResult, resolve_architecture, train_model

__all__ = [
    "AdaptiveTrainRequest",
    "AdaptiveTrainResult",
    "train_binarized",
    "split_epochs",
    "check_warmup_share",
    "BINARIZE_MODES",
    "DEFAULT_WARMUP_SHARE",
    "WARMUP_DESCRIPTION",
]

BINARIZE_MODES = ("none", "adaptive")
"""``train --binarize``: ``none`` trains the float network (``train``'s behaviour), ``adaptive`` this module."""

DEFAULT_WARMUP_SHARE = 0.5
WARMUP_DESCRIPTION = "float warm-up"
"""The description of the warm-up's ``"train"`` progress events (``train`` alone says ``"epochs"``)."""


@dataclass
class AdaptiveTrainRequest:
    """What ``train --binarize adaptive --budget B`` asks for.

    Attributes:
        train: dataset, architecture, time steps, the whole run's :class:`TrainConfig`
            (``config.epochs`` is warm-up and search together) and the checkpoint to write.
        budget: allowed validation drop against the warm float model, percentage points.
        warmup_share: the share of ``config.epochs`` trained in float before the search
            (strictly between 0 and 1).
        strategy: the search strategy (a registered name or a function); ``None``: the
            search's default (``SearchConfig().strategy``).
    """

    train: TrainRequest
    budget: float
    warmup_share: float = DEFAULT_WARMUP_SHARE
    strategy: str | Strategy | None = None


@dataclass
class AdaptiveTrainResult:
    """The binarized model, the two stages' results and what the checkpoint's metadata records.

    Attributes:
        model: the search's model (binarized layers marked), CPU, eval mode.
        warmup: the float warm-up (its model is the warm float network, its ``history`` per epoch).
        search: the search's result (decisions, trajectory, accuracies before and after).
        val_accuracy, test_accuracy: the output model's accuracies, percent.
        seconds: wall time of the whole call (not in the checkpoint).
        metadata: the checkpoint's metadata.
    """

    model: SpikingNet
    warmup: TrainResult
    search: CompressionResult
    val_accuracy: float
    test_accuracy: float
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)


def check_warmup_share(share: object) -> float:
    """``share`` as a float strictly between 0 and 1.

    Raises:
        CompressionError: not a number, or not strictly between 0 and 1 (the message names the fix).
    """
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < float(share) < 1.0:
        raise CompressionError(
            f"warm-up share must be a number strictly between 0 and 1 (the share of the epochs trained in float "
            f"before binarization starts), got {share!r}; e.g. 0.5 (--warmup-share 0.5)"
        )
    return float(share)


def split_epochs(epochs: float, warmup_share: float) -> tuple[float, float]:
    """The run's ``epochs`` as (float warm-up epochs, search epochs); both above 0."""
    share = check_warmup_share(warmup_share)
    if not (math.isfinite(epochs) and epochs > 0):
        raise CompressionError(f"epochs must be a finite number > 0, got {epochs!r}")
    warmup = epochs * share
    return warmup, epochs - warmup


def _relabelled(on_progress: ProgressCallback | None) -> ProgressCallback | None:
    """The warm-up's ``"train"`` events described as the float warm-up; every other event as it is."""
    if on_progress is None:
        return None
    forward = on_progress

    def relabel(event: ProgressEvent) -> None:
        forward(replace(event, description=WARMUP_DESCRIPTION) if event.phase == "train" else event)

    return relabel


def _check_candidates(request: TrainRequest) -> None:
    """Refuse, before any training, an architecture with no layer the search may binarize."""
    spec = resolve_architecture(request.arch, request.dataset)
    with torch.device("meta"):  # shapes only: nothing is allocated
        template = SpikingNet(spec, request.timesteps)
    try:
        resolve_candidates(template, None, [], False)
    except CompressionError as exc:
        raise CompressionError(
            f"architecture {request.arch!r} has no layer to binarize besides the first and the last "
            f"(which stay in float); train it without --binarize, or pick a deeper architecture ({exc})"
        ) from exc


def _step(step: SearchStep) -> dict[str, Any]:
    """A trajectory step as plain values, its wall time left out (it would change the checkpoint's bytes)."""
    return {
        "index": step.index,
        "action": step.action,
        "layers": list(step.layers),
        "binarized": list(step.binarized),
        "val_accuracy": step.val_accuracy,
        "drop_points": step.drop_points,
        "storage_bits": step.storage_bits,
        "estimates_points": dict(step.estimates_points),
        "estimates_raw": dict(step.estimates_raw),
        "paired": asdict(step.paired) if step.paired is not None else None,
    }


def _binarization_record(
    request: AdaptiveTrainRequest, warmup: TrainResult, search: CompressionResult, epochs: tuple[float, float]
) -> dict[str, Any]:
    """What the checkpoint's ``binarization`` metadata holds: the mode, its settings and the search's decisions."""
    return {
        "mode": "adaptive",
        "budget": search.budget,
        "budget_reference": "the float warm-up model, validation split",
        "warmup_share": request.warmup_share,
        "warmup_epochs": epochs[0],
        "search_epochs": epochs[1],
        "float_accuracy": {"val": warmup.val_accuracy, "test": warmup.test_accuracy},
        "strategy": search.strategy,
        "estimator": search.estimator,
        "search_config": dict(search.config),
        "candidates": list(search.candidates),
        "binarized": list(search.binarized),
        "decisions": [asdict(decision) for decision in search.decisions],
        "trajectory": [_step(step) for step in search.trajectory],
        "accuracy": dict(search.accuracy),
        "val_drop_points": search.val_drop,
        "finetune_epochs": search.finetune_epochs,
        "finetune_slices": search.finetune_slices,
    }


def _splits_for_budget(train: TrainRequest, budget: float) -> tuple[float, dict[str, ImageSet]]:
    """The validation share and the splits: ``train.val_share`` if given, else the share that resolves ``budget``.

    The search decides on the validation split, so its size sets the smallest drop the
    decisions can tell from noise; the chosen share (at least the default 10 %, at most
    :data:`~albsnn_compress.search.paired_drop.MAX_VAL_SHARE`) is recorded in the checkpoint.
    Given splits (``train.splits``) are used as they are.
    """
    share = VAL_FRACTION if train.val_share is None else check_val_share(train.val_share)
    if train.splits is not None:
        return share, train.splits
    splits = load_splits(train.dataset, train.data_root, val_share=share)
    if train.val_share is not None:
        return share, splits
    needed = val_share_to_resolve(budget, len(splits["train"]) + len(splits["val"]))
    if needed is None or needed <= share:
        return share, splits
    return needed, load_splits(train.dataset, train.data_root, val_share=needed)


def train_binarized(
    request: AdaptiveTrainRequest, ctx: DistContext = LOCAL, on_progress: ProgressCallback | None = None
) -> AdaptiveTrainResult:
    """Train in float for the warm-up share of the epochs, then let the search binarize during the rest.

    See the module docstring. Same request (seed included), same machine and thread count on
    CPU: the same checkpoint bytes.

    Args:
        request: the training request (``request.train.output``: the checkpoint to write, or
            ``None``), the budget, the warm-up share and the strategy.
        ctx: distributed context (single process by default).
        on_progress: the warm-up's ``"train"`` events (described as :data:`WARMUP_DESCRIPTION`)
            and ``"slice"`` events, then the search's ``"search"`` and ``"slice"`` events.

    Raises:
        OutputError: the output cannot be written (checked before any work).
        BudgetError: the budget is negative, above 100 or not a number.
        CompressionError: the warm-up share is not strictly between 0 and 1, the strategy is
            unknown, or the architecture has no candidate layer (all before any training).
        SpecError, DatasetError, AlbsnnError: as :func:`train_model` (architecture, dataset, batch size).
    """
    start = time.perf_counter()
    train = request.train
    if train.output is not None and ctx.is_main:
        check_output_file(train.output)  # an unwritable -o is refused now, not after the training
    budget = check_budget(request.budget)
    warmup_epochs, search_epochs = split_epochs(train.config.epochs, request.warmup_share)
    settings: dict[str, Any] = {}
    if request.strategy is not None:
        resolve_strategy(request.strategy)  # an unknown name is refused before the warm-up
        settings["strategy"] = request.strategy
    _check_candidates(train)
    val_share, splits = _splits_for_budget(train, budget)
    warm_request = replace(
        train, config=replace(train.config, epochs=warmup_epochs), output=None, splits=splits, val_share=val_share
    )  # train_model checks the splits and the batch size before the model is built
    warmup = train_model(warm_request, ctx, _relabelled(on_progress))
    config = SearchConfig(
        epochs=search_epochs,
        seed=train.config.seed,
        precisions=(1,),  # ALBSNN's mode decides between 1 bit and float, as the paper does
        batch_size=train.config.batch_size,
        amp=train.config.amp,
        sync_bn=train.config.sync_bn,
        channels_last=train.config.channels_last,
        **settings,
    )
    search = compress(
        warmup.model,
        splits["train"],
        splits["val"],
        budget,
        test_data=splits["test"],
        config=config,
        ctx=ctx,
        on_progress=on_progress,
    )
    model = cast(SpikingNet, search.model)  # compress refuses, before any work, a model it could not pack
    val_accuracy, test_accuracy = search.accuracy["val_after"], search.accuracy["test_after"]
    metadata = {
        **warmup.metadata,
        "accuracy": {"val": val_accuracy, "test": test_accuracy},
        "train_config": asdict(train.config),
        "binarization": _binarization_record(request, warmup, search, (warmup_epochs, search_epochs)),
    }
    if train.output is not None and ctx.is_main:
        with writing(train.output):
            save_checkpoint(train.output, model, metadata)
    ctx.barrier()
    seconds = time.perf_counter() - start
    return AdaptiveTrainResult(model, warmup, search, val_accuracy, test_accuracy, seconds, metadata)
