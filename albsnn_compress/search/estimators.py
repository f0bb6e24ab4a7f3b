r"""Accuracy-loss estimators: how much would binarizing each layer hurt?

ALBSNN decides which layers to binarize from an estimate, made during learning,
of the error binarized weights cause. The paper's formula is not public; these
three are ours (formulas in docs/method.md), all behind one interface::

    estimator.estimate(model, candidates, probe, bits=None) -> {layer: raw value}

``bits`` (layer to bits per weight, default 1 for every layer) asks for the harm of giving
each layer that precision instead (:mod:`albsnn_compress.precision`): the search over
precisions ranks (layer, bits) pairs with it. "Binarize" below reads "quantize to those bits".

Raw values are in each estimator's own unit; the search turns them into
accuracy points with a calibration factor fitted against drops it measures
(:class:`~albsnn_compress.search.calibration.Calibration`), and ranks layers by
estimated harm per bit saved.

:data:`ESTIMATORS` maps a name to a factory; :func:`register_estimator` adds
one, and :func:`resolve_estimator` turns what ``SearchConfig(estimator=...)``
holds (a name or an estimator object) into the estimator a run uses.

* ``weight`` — relative quantization error :math:`\|W - W_b\|^2 / \|W\|^2`; data-free.
* ``output`` — binarize the layer alone, run calibration batches, and take the
  fraction of spikes that flip at the next LIF layer (the relative error of the
  layer's own output is kept as a diagnostic); SNN-specific.
* ``loss`` — second-order Taylor estimate of the loss increase,
  :math:`\Delta L \approx g^\top \delta + \tfrac12 \delta^\top \operatorname{diag}(F)\,\delta`
  with :math:`\delta = W_b - W`, :math:`g` the mean gradient and :math:`F` the
  diagonal Fisher (running mean of squared gradients) gathered while finetuning.
* ``probe`` — binarize the layer alone and measure the cross-entropy increase on
  the probe batches (nats per image), with batch norm re-estimated on each probe
  batch itself: the paper's "accuracy loss a layer's binarization causes",
  measured without finetuning.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from albsnn_compress.binarize import binarize_, binarize_weight, is_binarized, unbinarize_
from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import FLOAT_BITS, quantize_weight, set_precision_
from albsnn_compress.registry import Registry
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.recording import recorded_outputs

__all__ = [
    "Probe",
    "Estimator",
    "WeightEstimator",
    "OutputEstimator",
    "LossEstimator",
    "ProbeEstimator",
    "FisherTracker",
    "EstimatorFactory",
    "ESTIMATORS",
    "register_estimator",
    "resolve_estimator",
    "latent_weight",
    "quantized_values",
]


@dataclass
class Probe:
    """Calibration batches (images in [0, 1], labels) on the model's device."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]


def latent_weight(module: nn.Module) -> torch.Tensor:
    """The real-valued weight of a layer, binarized, k-bit or float."""
    if parametrize.is_parametrized(module, "weight"):
        parametrizations = cast(nn.ModuleDict, module.parametrizations)
        return cast(torch.Tensor, parametrizations["weight"].original)
    return cast(torch.Tensor, module.weight)


@runtime_checkable
class Estimator(Protocol):
    """Estimates, per candidate layer, the harm of binarizing it (higher = worse).

    ``name`` is what results and reports call it. An estimator that learns from
    finetuning may also define ``after_backward(model, candidates)``: the search
    calls it after every backward pass of every finetuning slice, before the
    optimizer step (the loss estimator gathers its gradient statistics there).

    Attributes:
        name: the estimator's name (``"weight"``).
    """

    name: str

    def estimate(
        self, model: nn.Module, candidates: list[str], probe: Probe, bits: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        """Raw values (the estimator's own unit) per name in ``candidates``, on the model as it is: the harm of
        giving each its ``bits`` (default 1 bit). An estimator without ``bits`` serves 1-bit searches only."""
        ...


def _bits_of(bits: Mapping[str, int] | None, name: str) -> int:
    return 1 if bits is None else bits.get(name, 1)


def quantized_values(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` as a layer at ``bits`` per weight computes it (1: ``alpha * sign``), no gradient."""
    with torch.no_grad():
        return binarize_weight(weight) if bits == 1 else quantize_weight(weight, bits)


@contextmanager
def _at_precision(model: nn.Module, name: str, bits: int) -> Iterator[None]:
    """``name`` at ``bits`` per weight for the block (from a float layer), float again after it."""
    set_precision_(model, {name: bits})
    try:
        yield
    finally:
        set_precision_(model, {name: FLOAT_BITS})


class WeightEstimator:
    """Relative quantization error of the weights: ``||W - W_b||^2 / ||W||^2``."""

    name = "weight"

    @torch.no_grad()
    def estimate(
        self, model: nn.Module, candidates: list[str], probe: Probe, bits: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        modules = dict(model.named_modules())
        values = {}
        for name in candidates:
            weight = latent_weight(modules[name]).detach()
            error = (weight - quantized_values(weight, _bits_of(bits, name))).square().sum()
            values[name] = float(error / weight.square().sum().clamp_min(1e-30))
        return values


def _next_lif(model: nn.Module, name: str) -> nn.Module | None:
    """The first LIF module after ``name`` in module order (its spikes are what flips)."""
    seen = False
    for other, module in model.named_modules():
        if other == name:
            seen = True
        elif seen and isinstance(module, LIF):
            return module
    return None


def _detached(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
    return output.detach()


class OutputEstimator:
    """Fraction of spikes that flip at the next LIF when only this layer is binarized.

    For a layer with no LIF after it, the relative output error is used instead.
    ``details`` keeps both numbers per layer for the report.

    Cost: per probe batch, one forward pass of the current network records every
    candidate's output and its next LIF's spikes at once; then, per candidate, a
    forward pass with that layer binarized stops as soon as its next LIF has
    fired (about half a pass on average), instead of two full passes per layer.
    A candidate that is already binarized is compared with its float self: the
    reference pass then has every such candidate in float.
    """

    name = "output"

    def __init__(self) -> None:
        self.details: dict[str, dict[str, float]] = {}

    @torch.no_grad()
    def estimate(
        self, model: nn.Module, candidates: list[str], probe: Probe, bits: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        model.eval()
        modules = dict(model.named_modules())
        layers = {name: modules[name] for name in candidates}
        watched = {name: _next_lif(model, name) or layer for name, layer in layers.items()}
        already_binary = [name for name in candidates if is_binarized(layers[name])]
        unbinarize_(model, already_binary)
        sums = {name: {"error": 0.0, "energy": 0.0, "flipped": 0.0, "spikes": 0.0} for name in candidates}
        try:
            for images, _ in probe.batches:
                reference = recorded_outputs(model, images, [*layers.values(), *watched.values()], _detached)
                for name, layer in layers.items():
                    at = _bits_of(bits, name)
                    self._accumulate(model, name, at, layer, watched[name], images, reference, sums[name])
        finally:
            binarize_(model, already_binary)
        return {name: self._summarize(name, sums[name], watched[name] is not layers[name]) for name in candidates}

    @staticmethod
    def _accumulate(
        model: nn.Module,
        name: str,
        bits: int,
        layer: nn.Module,
        lif: nn.Module,
        images: torch.Tensor,
        reference: dict[nn.Module, list[torch.Tensor]],
        sums: dict[str, float],
    ) -> None:
        """Add one batch's output error and spike flips of ``name`` alone at ``bits``."""
        with _at_precision(model, name, bits):
            changed = recorded_outputs(model, images, [layer, lif], _detached, stop_after={lif: len(reference[lif])})
        for before, after in zip(reference[layer], changed[layer]):
            sums["error"] += float((after - before).square().sum())
            sums["energy"] += float(before.square().sum())
        for before, after in zip(reference[lif], changed[lif]):
            sums["flipped"] += float((before != after).sum())
            sums["spikes"] += before.numel()

    def _summarize(self, name: str, sums: dict[str, float], has_lif: bool) -> float:
        rel_error = sums["error"] / max(sums["energy"], 1e-30)
        flips = sums["flipped"] / max(sums["spikes"], 1) if has_lif else float("nan")
        self.details[name] = {"relative_output_error": rel_error, "spike_flip_fraction": flips}
        return flips if has_lif else rel_error


class FisherTracker:
    """Running means of gradients and squared gradients of the candidates' latent weights.

    Call :meth:`update` after each backward pass (the finetuner does); the loss
    estimator reads the averages. ``decay`` sets the running-mean horizon.
    """

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.grad: dict[str, torch.Tensor] = {}
        self.fisher: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        for name in names:
            grad = latent_weight(modules[name]).grad
            if grad is None:
                continue
            if name not in self.grad:
                self.grad[name] = grad.detach().clone()
                self.fisher[name] = grad.detach().square()
            else:
                self.grad[name].mul_(self.decay).add_(grad, alpha=1 - self.decay)
                self.fisher[name].mul_(self.decay).add_(grad.square(), alpha=1 - self.decay)

    def gather(self, model: nn.Module, names: list[str], probe: Probe) -> None:
        """Fill the averages from the probe batches without changing the model."""
        model.eval()  # batch norm uses running statistics; gradients still flow
        for images, labels in probe.batches:
            model.zero_grad(set_to_none=True)
            torch.autograd.backward(F.cross_entropy(model(images), labels))
            self.update(model, names)
        model.zero_grad(set_to_none=True)


class LossEstimator:
    """Taylor estimate of the loss increase from binarizing each layer (nats)."""

    name = "loss"

    def __init__(self, tracker: FisherTracker | None = None) -> None:
        self.tracker = tracker or FisherTracker()

    def after_backward(self, model: nn.Module, candidates: list[str]) -> None:
        """Fold the gradients of this finetuning step into the running averages."""
        self.tracker.update(model, candidates)

    def estimate(
        self, model: nn.Module, candidates: list[str], probe: Probe, bits: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        missing = [n for n in candidates if n not in self.tracker.fisher]
        if missing:
            self.tracker.gather(model, missing, probe)
        modules = dict(model.named_modules())
        values = {}
        with torch.no_grad():
            for name in candidates:
                weight = latent_weight(modules[name]).detach()
                delta = quantized_values(weight, _bits_of(bits, name)) - weight
                grad = self.tracker.grad.get(name, torch.zeros_like(weight))
                fisher = self.tracker.fisher.get(name, torch.zeros_like(weight))
                values[name] = float((grad * delta).sum() + 0.5 * (fisher * delta.square()).sum())
        return values


@contextmanager
def _batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inference mode, except that every batch norm normalises with the statistics of its batch.

    A forward pass then shows the network as it would be after batch-norm
    re-estimation on that batch (what every measurement does before it counts),
    in one pass instead of a re-estimation pass and an evaluation pass. Nothing
    else runs in training mode (no dropout noise: the values stay deterministic).
    On exit, every module's train/eval mode and every batch-norm buffer
    (running mean, variance, batch count) are exactly as they were.
    """
    modes = {module: module.training for module in model.modules()}
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    buffers = [{key: value.clone() for key, value in norm.named_buffers(recurse=False)} for norm in norms]
    model.eval()
    for norm in norms:
        norm.train()
    try:
        yield
    finally:
        for norm, saved in zip(norms, buffers):
            for key, value in saved.items():
                getattr(norm, key).copy_(value)
        for module, training in modes.items():
            module.train(training)


class ProbeEstimator:
    r"""Cross-entropy increase on the probe batches when only this layer is binarized (nats per image).

    For each candidate :math:`l`, with :math:`p` the class probabilities of the
    current network (every candidate in float) and :math:`q_l` those with only
    :math:`l` binarized, both with batch norm re-estimated on the probe batch,
    over the :math:`N` probe images with labels :math:`y_i`:

    .. math::

        \Delta L_l = \frac{1}{N} \sum_{i=1}^{N} \bigl(\log p_{i,y_i} - \log q_{l,i,y_i}\bigr)

    This is the paper's idea measured directly: the loss a layer's binarization
    causes, on a few training batches and without finetuning, instead of a
    guess from the weights (whose relative error is about the same for every
    layer). A layer the rest of the network is sensitive to scores high even
    when its weight error is typical. It is the labelled-task harm, like the
    accuracy drop the search is budgeted on, rather than any change of the
    outputs; ``details`` keeps, per layer, that change too
    (:math:`\mathrm{KL}(p \,\|\, q_l)`, nats per image) and the fraction of
    probe images whose predicted class changes. Can be slightly negative for a
    harmless layer.

    Cost: one forward pass of the probe batches for the reference, then one per
    candidate (``1 + n`` probe passes). Deterministic: no sampling, and the model
    (weights, batch-norm buffers, binarized layers, train/eval mode) is left
    exactly as found; a candidate that is already binarized is compared with its
    float self.
    """

    name = "probe"

    def __init__(self) -> None:
        self.details: dict[str, dict[str, float]] = {}

    @torch.no_grad()
    def estimate(
        self, model: nn.Module, candidates: list[str], probe: Probe, bits: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        modules = dict(model.named_modules())
        already_binary = [name for name in candidates if is_binarized(modules[name])]
        unbinarize_(model, already_binary)
        try:
            with _batch_statistics(model):
                reference = [F.log_softmax(model(images), dim=1) for images, _ in probe.batches]
                return {name: self._compare(model, name, _bits_of(bits, name), probe, reference) for name in candidates}
        finally:
            binarize_(model, already_binary)

    def _compare(self, model: nn.Module, name: str, bits: int, probe: Probe, reference: list[torch.Tensor]) -> float:
        """The loss increase over the reference outputs with ``name`` alone at ``bits``; fills ``details[name]``."""
        sums: dict[str, float] = {"loss_increase": 0.0, "kl": 0.0, "flipped": 0.0, "images": 0}
        with _at_precision(model, name, bits):
            for (images, labels), log_p in zip(probe.batches, reference):
                log_q = F.log_softmax(model(images), dim=1)
                sums["loss_increase"] += float(
                    F.nll_loss(log_q, labels, reduction="sum") - F.nll_loss(log_p, labels, reduction="sum")
                )
                sums["kl"] += float(F.kl_div(log_q, log_p, reduction="sum", log_target=True))
                sums["flipped"] += float((log_q.argmax(dim=1) != log_p.argmax(dim=1)).sum())
                sums["images"] += len(labels)
        count = max(sums["images"], 1)
        self.details[name] = {"kl_nats": sums["kl"] / count, "prediction_flip_fraction": sums["flipped"] / count}
        return sums["loss_increase"] / count


EstimatorFactory = Callable[[], Estimator]

ESTIMATORS: Registry[EstimatorFactory] = Registry("estimator", CompressionError, "or pass an estimator object")
for _name, _factory in (
    ("weight", WeightEstimator),
    ("output", OutputEstimator),
    ("loss", LossEstimator),
    ("probe", ProbeEstimator),
):
    ESTIMATORS.register(_name, _factory)


def register_estimator(name: str, factory: EstimatorFactory) -> None:
    """Let ``SearchConfig(estimator=name)`` build a fresh ``factory()`` for each run.

    Raises:
        CompressionError: ``name`` is already registered.
    """
    ESTIMATORS.register(name, factory)


def resolve_estimator(estimator: str | Estimator) -> Estimator:
    """The estimator one run uses: a fresh one for a registered name, a deep copy of an object.

    An object is copied so that what it gathers during a run (Fisher statistics,
    per-layer details) never carries into the next: the same config gives the
    same result every time.

    Raises:
        CompressionError: an unknown name, or an object without ``name`` and ``estimate``.
    """
    if isinstance(estimator, str):
        return ESTIMATORS.lookup(estimator)()
    if not isinstance(estimator, Estimator):
        raise CompressionError(
            f"estimator {estimator!r} has no name and estimate(model, candidates, probe); pass one of "
            f"{list(ESTIMATORS)} or such an object"
        )
    return copy.deepcopy(estimator)
