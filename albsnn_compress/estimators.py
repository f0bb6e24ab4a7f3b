r"""Accuracy-loss estimators: how much would binarizing each layer hurt?

ALBSNN decides which layers to binarize from an estimate, made during learning,
of the error binarized weights cause. The paper's formula is not public; these
three are ours (formulas in docs/method.md), all behind one interface::

    estimator.estimate(model, candidates, probe) -> {layer: raw value}

Raw values are in each estimator's own unit; the search turns them into
accuracy points with a calibration factor fitted against drops it measures
(:class:`Calibration`), and ranks layers by estimated harm per bit saved.

* ``weight`` — relative quantization error :math:`\|W - W_b\|^2 / \|W\|^2`; data-free.
* ``output`` — binarize the layer alone, run calibration batches, and take the
  fraction of spikes that flip at the next LIF layer (the relative error of the
  layer's own output is kept as a diagnostic); SNN-specific.
* ``loss`` — second-order Taylor estimate of the loss increase,
  :math:`\Delta L \approx g^\top \delta + \tfrac12 \delta^\top \operatorname{diag}(F)\,\delta`
  with :math:`\delta = W_b - W`, :math:`g` the mean gradient and :math:`F` the
  diagonal Fisher (running mean of squared gradients) gathered while finetuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from albsnn_compress.binarize import binarize_, binarize_weight, is_binarized, unbinarize_
from albsnn_compress.errors import CompressionError
from albsnn_compress.snn.neurons import LIF

__all__ = [
    "Probe",
    "Estimator",
    "WeightEstimator",
    "OutputEstimator",
    "LossEstimator",
    "FisherTracker",
    "Calibration",
    "ESTIMATORS",
    "make_estimator",
    "latent_weight",
]


@dataclass
class Probe:
    """Calibration batches (images in [0, 1], labels) on the model's device."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]


def latent_weight(module: nn.Module) -> torch.Tensor:
    """The real-valued weight of a layer, binarized or not."""
    if is_binarized(module):
        return module.parametrizations["weight"].original
    return module.weight


class Estimator(Protocol):
    """Estimates, per candidate layer, the harm of binarizing it (higher = worse)."""

    name: str

    def estimate(self, model: nn.Module, candidates: list[str], probe: Probe) -> dict[str, float]: ...


class WeightEstimator:
    """Relative quantization error of the weights: ``||W - W_b||^2 / ||W||^2``."""

    name = "weight"

    @torch.no_grad()
    def estimate(self, model: nn.Module, candidates: list[str], probe: Probe) -> dict[str, float]:
        modules = dict(model.named_modules())
        values = {}
        for name in candidates:
            weight = latent_weight(modules[name]).detach()
            error = (weight - binarize_weight(weight)).square().sum()
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


class OutputEstimator:
    """Fraction of spikes that flip at the next LIF when only this layer is binarized.

    For a layer with no LIF after it, the relative output error is used instead.
    ``details`` keeps both numbers per layer for the report.
    """

    name = "output"

    def __init__(self) -> None:
        self.details: dict[str, dict[str, float]] = {}

    def _capture(self, model: nn.Module, layer: nn.Module, lif: nn.Module | None, probe: Probe) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        captured: list[list[torch.Tensor]] = [[], []]
        hooks = [layer.register_forward_hook(lambda _m, _i, out: captured[0].append(out.detach()))]
        if lif is not None:
            hooks.append(lif.register_forward_hook(lambda _m, _i, out: captured[1].append(out.detach())))
        try:
            for images, _ in probe.batches:
                model(images)
        finally:
            for hook in hooks:
                hook.remove()
        spikes = captured[1] if lif is not None else [None] * len(captured[0])
        return list(zip(captured[0], spikes))

    @torch.no_grad()
    def estimate(self, model: nn.Module, candidates: list[str], probe: Probe) -> dict[str, float]:
        model.eval()
        modules = dict(model.named_modules())
        values = {}
        for name in candidates:
            layer, lif = modules[name], _next_lif(model, name)
            was_binary = is_binarized(layer)
            if was_binary:
                unbinarize_(model, [name])
            reference = self._capture(model, layer, lif, probe)
            binarize_(model, [name])
            changed = self._capture(model, layer, lif, probe)
            if not was_binary:
                unbinarize_(model, [name])
            rel_error = sum(float((b - a).square().sum()) for (a, _), (b, _) in zip(reference, changed)) / max(
                sum(float(a.square().sum()) for a, _ in reference), 1e-30
            )
            flips = None
            if lif is not None:
                flipped = sum(float((a != b).sum()) for (_, a), (_, b) in zip(reference, changed))
                flips = flipped / max(sum(a.numel() for _, a in reference), 1)
            self.details[name] = {"relative_output_error": rel_error, "spike_flip_fraction": flips if flips is not None else float("nan")}
            values[name] = flips if flips is not None else rel_error
        return values


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
            F.cross_entropy(model(images), labels).backward()
            self.update(model, names)
        model.zero_grad(set_to_none=True)


class LossEstimator:
    """Taylor estimate of the loss increase from binarizing each layer (nats)."""

    name = "loss"

    def __init__(self, tracker: FisherTracker | None = None) -> None:
        self.tracker = tracker or FisherTracker()

    def estimate(self, model: nn.Module, candidates: list[str], probe: Probe) -> dict[str, float]:
        missing = [n for n in candidates if n not in self.tracker.fisher]
        if missing:
            self.tracker.gather(model, missing, probe)
        modules = dict(model.named_modules())
        values = {}
        with torch.no_grad():
            for name in candidates:
                weight = latent_weight(modules[name]).detach()
                delta = binarize_weight(weight) - weight
                grad = self.tracker.grad.get(name, torch.zeros_like(weight))
                fisher = self.tracker.fisher.get(name, torch.zeros_like(weight))
                values[name] = float((grad * delta).sum() + 0.5 * (fisher * delta.square()).sum())
        return values


ESTIMATORS = ("weight", "output", "loss")


def make_estimator(name: str) -> Estimator:
    """A fresh estimator by name (``weight``, ``output`` or ``loss``)."""

    factories = {"weight": WeightEstimator, "output": OutputEstimator, "loss": LossEstimator}
    if name not in factories:
        raise CompressionError(f"unknown estimator {name!r}; choose one of {list(ESTIMATORS)}")
    return factories[name]()


@dataclass
class Calibration:
    """Maps raw estimator values to accuracy points: ``points = factor * raw``.

    The factor is the ratio of measured drop increments to summed raw values over
    every change the search has measured (a least-squares fit through the origin
    with unit weights on the groups). Until a first measurement it is unknown.
    """

    measured_points: float = 0.0
    raw_total: float = 0.0
    observations: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.raw_total > 0

    @property
    def factor(self) -> float:
        """Points per raw unit (>= 0); 0 until calibrated."""
        if not self.ready:
            return 0.0
        return max(self.measured_points, 0.0) / self.raw_total

    def observe(self, raw: float, measured_drop_increment: float) -> None:
        """Record that changes worth ``raw`` cost ``measured_drop_increment`` points."""
        if raw <= 0:
            return
        self.observations.append((raw, measured_drop_increment))
        self.raw_total += raw
        self.measured_points += measured_drop_increment

    def points(self, raw: float) -> float | None:
        """Estimated accuracy drop in points, or None before the first measurement."""
        return self.factor * max(raw, 0.0) if self.ready else None
