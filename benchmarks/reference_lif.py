"""The LIF forward pass as it was before the fast path (commit ae29ef1), kept for comparison only.

``tests/test_fast_lif.py`` checks the fast :class:`~albsnn_compress.snn.neurons.LIF`
against :func:`reference_lif_forward` (outputs equal, gradients allclose), and
``benchmarks/bench_training.py`` times both in the same run ("reference LIF" vs
"fast LIF"). It is written plainly: one Python loop over time steps, the
surrogate's spike computed from the margin ``H - v_th`` and its slope recomputed
from the saved margin in backward, ``torch.stack`` of the steps. Nothing in the
package imports it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from albsnn_compress.snn.neurons import LIF

__all__ = ["reference_lif_forward", "ReferenceLIF", "use_reference_lif_"]


class _ArcTanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        grad = (ctx.alpha / 2) / (1 + (math.pi / 2 * ctx.alpha * x).square())
        return grad_out * grad, None


class _RectangularSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.width = width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        grad = (x.abs() < ctx.width / 2).to(x.dtype) / ctx.width
        return grad_out * grad, None


def _heaviside(neuron: LIF, margin: torch.Tensor) -> torch.Tensor:
    config = neuron.surrogate.config()
    if config["name"] == "arctan":
        return _ArcTanSpike.apply(margin, config["alpha"])
    return _RectangularSpike.apply(margin, config["width"])


def reference_lif_forward(neuron: LIF, x: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of ``neuron`` for input ``x``, computed the old way from its settings."""
    tau, v_th, v_reset = neuron.tau, neuron.v_threshold, neuron.v_reset
    spikes: list[torch.Tensor] = []
    v: torch.Tensor | None = None
    for t in range(x.shape[0]):
        if v is None:
            h = x[t] / tau + v_reset if neuron.leak and neuron.decay_input else x[t] + v_reset
        elif not neuron.leak:
            h = v + x[t]
        elif neuron.decay_input:
            h = v + (x[t] - (v - v_reset)) / tau
        else:
            h = v - (v - v_reset) / tau + x[t]
        if neuron.reset == "soft_deferred" and spikes:
            previous = spikes[-1].detach() if neuron.detach_reset else spikes[-1]
            h = h - v_th * previous
        margin = h - v_th
        spike = _heaviside(neuron, margin)
        if neuron.strict_threshold:
            spike = spike - (margin == 0).to(spike.dtype)
        reset_spike = spike.detach() if neuron.detach_reset else spike
        if neuron.reset == "hard":
            v = h * (1.0 - reset_spike) + v_reset * reset_spike
        elif neuron.reset == "soft":
            v = h - v_th * reset_spike
        else:  # none, soft_deferred: the membrane stays as charged
            v = h
        spikes.append(spike)
    return torch.stack(spikes)


class ReferenceLIF(nn.Module):
    """Runs :func:`reference_lif_forward` with the settings (and buffers) of a wrapped :class:`LIF`."""

    def __init__(self, neuron: LIF) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference_lif_forward(self.neuron, x)


def use_reference_lif_(model: nn.Module) -> nn.Module:
    """Replace every :class:`LIF` of ``model`` by a :class:`ReferenceLIF` around it (in place); returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, LIF):
            setattr(model, name, ReferenceLIF(child))
        else:
            use_reference_lif_(child)
    return model
