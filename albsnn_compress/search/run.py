"""The compression search: measure, finetune, binarize, verify, under an accuracy budget.

``compress(model, train, val, budget=0.2)`` copies the model, lets a strategy
(:mod:`albsnn_compress.search.strategies`) choose which candidate layers to binarize
on a :class:`~albsnn_compress.search.session.SearchSession`, finetuning with the input
model as teacher, and returns a :class:`~albsnn_compress.search.result.CompressionResult`.
Whatever the strategy, the final model's *measured* validation drop is checked
against the budget (the ``all`` and ``none`` baselines excepted: they report
what they get). The caller's model, its train/eval mode and torch's global
random state are left as they were.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import FLOAT_BITS, layer_bits
from albsnn_compress.progress import ProgressCallback
from albsnn_compress.search.budget import BudgetWarning, check_budget, implausible_budget
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.data_input import SplitData, as_imageset
from albsnn_compress.search.paired_drop import PairedDrop, paired_drop, unresolvable_budget
from albsnn_compress.search.result import CompressionResult
from albsnn_compress.search.session import SearchSession
from albsnn_compress.search.strategies import (
    MULTI_PRECISION,
    NO_FLOAT,
    STRATEGIES,
    default_precisions,
    resolve_strategy,
)
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.targets import TARGETS, check_target
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.outcomes import accuracy_percent, correct_answers

__all__ = ["SearchConfig", "compress", "check_budget"]


def _check_packable(model: nn.Module) -> None:
    if not isinstance(model, SpikingNet):
        raise CompressionError(
            f"model is a {type(model).__name__}, not a SpikingNet, so its result cannot be packed (.albsnn) or "
            "exported "
            "(ONNX); build it from a spec with albsnn_compress.build_model, or pass needs_packing=False to compress "
            "it in memory only"
        )


def _check_no_k_bit_layers(model: nn.Module) -> None:
    """The search binarizes float layers; a layer at 2-8 bits (``set_precision_``) is refused by name, not stacked."""
    quantized = {name: bits for name, bits in layer_bits(model).items() if 1 < bits < FLOAT_BITS}
    if quantized:
        name, bits = next(iter(quantized.items()))
        raise CompressionError(
            f"layer {name} is {bits}-bit; the search starts from float (or 1-bit) layers and chooses their bits "
            f"itself (SearchConfig.precisions): set it back with set_precision_(model, {{{name!r}: 32}}), or write "
            "the model as it is"
        )


def _check_precisions_taken(strategy_name: str, precisions: tuple[int, ...]) -> None:
    """A registered strategy that decides between 1 bit and float only is refused other precisions by name."""
    if precisions != (1,) and strategy_name in STRATEGIES and strategy_name not in MULTI_PRECISION:
        raise CompressionError(
            f"strategy {strategy_name!r} decides between 1 bit and float only, but precisions "
            f"{list(precisions)} were asked for; use strategy 'recover' (or one of {sorted(MULTI_PRECISION)}), "
            "or precisions [1]"
        )


def _check_target_taken(strategy_name: str, config: SearchConfig) -> None:
    """A registered strategy that may leave layers in float is refused a target without float layers, by name."""
    if config.target is None or TARGETS.lookup(config.target).float_layers:
        return
    if strategy_name in STRATEGIES and strategy_name not in NO_FLOAT:
        raise CompressionError(
            f"strategy {strategy_name!r} may leave layers in float, which target {config.target!r} does not take; "
            f"use one of {sorted(NO_FLOAT)}"
        )


def _nonempty(data: SplitData, what: str) -> ImageSet:
    """``data`` as an :class:`ImageSet`, refused when it holds no image (an accuracy over 0 images means nothing)."""
    split = as_imageset(data, what)
    if len(split) == 0:
        raise CompressionError(f"{what}: 0 images; pass a split with at least one image")
    return split


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the run and give the caller's random state back after it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def compress(
    model: nn.Module,
    train_data: SplitData,
    val_data: SplitData,
    budget: float = 0.2,
    *,
    test_data: SplitData | None = None,
    config: SearchConfig | None = None,
    ctx: DistContext = LOCAL,
    on_progress: ProgressCallback | None = None,
    needs_packing: bool = True,
) -> CompressionResult:
    """Binarize the candidate layers of ``model`` that ``budget`` affords.

    Args:
        model: a :class:`~albsnn_compress.snn.spec.SpikingNet` (or, with
            ``needs_packing=False``, any ``nn.Module`` mapping images to logits);
            it is copied, never modified.
        train_data, val_data: an :class:`ImageSet`, ``(images, labels)`` tensors or a
            torch ``DataLoader`` (read once into memory; see :mod:`albsnn_compress.search.data_input`).
            Finetuning uses ``train_data``; the budget is checked on ``val_data``.
        budget: allowed drop in percentage points of validation top-1 accuracy
            (0.2 = 0.2 points), against the input model on the same split.
        test_data: optional; reported only, never used for decisions.
        config: strategy, estimator, finetuning settings, seed.
        ctx: distributed context (single process by default).
        on_progress: receives the search's progress events (nothing is printed).
        needs_packing: refuse, before any work, a model whose result could not be
            written as a ``.albsnn`` container or ONNX file (anything but a SpikingNet).

    Returns:
        The compressed model with its binarized layers, decisions, trajectory and accuracies.

    Raises:
        BudgetError: ``budget`` is negative, above 100 or not a number
            (:func:`~albsnn_compress.search.budget.check_budget`).
        CompressionError: the model cannot be packed, there is no candidate layer, a
            layer name, strategy or estimator is unknown, the data is malformed or a split
            holds no image, or (when the run finetunes) ``config.batch_size`` is larger than
            ``train_data`` so no batch could be drawn, or a strategy that may leave float layers on a
            ``config.target`` without them; all before the search starts. After it: on such a target,
            a budget missed with every layer at its highest precision; a result that does not pass
            :func:`~albsnn_compress.targets.check_target`.

    Warns:
        BudgetWarning: ``budget`` is above 0 but below one validation image (``100 / len(val_data)``
            points), so it allows no loss at all, like 0; or it is below the margin the split's
            confidence bound has when a few percent of answers change
            (:func:`~albsnn_compress.search.paired_drop.unresolvable_budget`), so the validation split
            cannot confirm it.

    Example:
        >>> result = compress(model, train, val, 0.5, config=SearchConfig(layers=["conv3"]))  # doctest: +SKIP
        >>> result.binarized  # doctest: +SKIP
        ['layers.conv3']
    """
    budget = check_budget(budget)
    if needs_packing:
        _check_packable(model)
    _check_no_k_bit_layers(model)
    config = config or SearchConfig()
    strategy_name, strategy = resolve_strategy(config.strategy)
    precisions = config.precisions if config.precisions is not None else default_precisions(strategy_name)
    _check_precisions_taken(strategy_name, precisions)
    config = dataclasses.replace(config, precisions=precisions)  # the result records what the run took
    _check_target_taken(strategy_name, config)
    started = time.perf_counter()
    with _seeded(config.seed, ctx.device):
        train, val = _nonempty(train_data, "train_data"), _nonempty(val_data, "val_data")
        if (why := implausible_budget(budget, len(val))) is not None:
            warnings.warn(why, BudgetWarning, stacklevel=2)
        test = _nonempty(test_data, "test_data") if test_data is not None else None
        session = SearchSession(model, train, val, budget, config, ctx, on_progress)
        unresolvable = unresolvable_budget(budget, len(val), config.confidence, len(train) + len(val))
        if why is None and (why := unresolvable) is not None:
            warnings.warn(why, BudgetWarning, stacklevel=2)  # once the settings are known good, before the search
        session.run(strategy)
        if config.target is not None:
            check_target(session.model, TARGETS.lookup(config.target))  # what the run returns runs on it, bit for bit
        accuracy, paired = _final_accuracy(session, test, ctx)
    compressed = session.model.to("cpu").eval()
    timings = dict(session.timings)
    timings["total"] = time.perf_counter() - started
    return CompressionResult(
        model=compressed,
        binarized=binarized_layers(compressed),
        precisions={name: bits for name, bits in layer_bits(compressed).items() if bits < FLOAT_BITS},
        candidates=session.candidates,
        decisions=session.final_decisions(),
        trajectory=session.trajectory,
        budget=budget,
        accuracy=accuracy,
        timings=timings,
        finetune_epochs=session.finetune_epochs,
        strategy=strategy_name,
        estimator=session.estimator.name,
        seed=config.seed,
        config=config.as_json(strategy_name, session.estimator.name),
        finetune_slices=session.slices,
        paired=paired,
        control=session.control_measurement,
    )


def _final_accuracy(
    session: SearchSession, test: ImageSet | None, ctx: DistContext
) -> tuple[dict[str, float], dict[str, PairedDrop]]:
    """Accuracies before and after, and the paired drop image by image, on validation (and test if given)."""
    val_after = correct_answers(session.model, session.val, ctx)
    accuracy = {"val_before": session.val_before, "val_after": accuracy_percent(val_after)}
    paired = {"val": paired_drop(session.val_correct_before, val_after)}
    if test is not None:
        test_before, test_after = (
            correct_answers(session.input_model, test, ctx),
            correct_answers(session.model, test, ctx),
        )
        accuracy.update(test_before=accuracy_percent(test_before), test_after=accuracy_percent(test_after))
        paired["test"] = paired_drop(test_before, test_after)
    return accuracy, paired
