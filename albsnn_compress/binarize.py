r"""1-bit weights with a per-output-channel scale, and the straight-through estimator.

For a layer with latent real weights :math:`W` (``[C_out, ...]``), the binarized
weights are

.. math::

    W_b = \alpha \odot \operatorname{sign}(W), \qquad
    \alpha_c = \frac{1}{n} \sum_{j} |W_{c,j}| \quad (\text{mean over every axis but the output one}),

with :math:`\operatorname{sign}(0) = +1` (so every weight is exactly one bit).
This is larq's ``MagnitudeAwareSign`` scale (XNOR-Net's :math:`\alpha`).

Backward (the straight-through estimator, exact rule):

.. math::

    \frac{\partial L}{\partial W} = \frac{\partial L}{\partial W_b} \odot 1[|W| \le 1]

:math:`\alpha` is treated as a constant in the backward pass (it is recomputed from
the latent weights at every forward). Latent weights stay in float during
finetuning; only :math:`\operatorname{sign}(W)` and :math:`\alpha` are stored.

Binarization is idempotent, bit for bit: :math:`W_b` binarizes to itself (see
:func:`binary_scale`), so a model saved with effective weights :math:`W_b`
reloads with identical outputs.

The transform is a :mod:`torch.nn.utils.parametrize` parametrization of
``weight``, so it works on any ``nn.Conv2d``/``nn.Linear`` (any kernel size,
groups, with or without bias) and keeps the original ``Parameter`` object, so
optimizers and DDP keep tracking it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from albsnn_compress.errors import CompressionError
from albsnn_compress.snn.layer_types import is_binarizable

__all__ = [
    "binary_scale",
    "binarize_weight",
    "ste_sign",
    "BinarizeWeight",
    "binarize_",
    "unbinarize_",
    "is_binarized",
    "binarized_layers",
    "candidate_layers",
    "weight_parametrizations",
]


def binary_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale ``alpha = mean(|W|)`` over all axes but the first, shape ``[C_out]``.

    The mean is taken in float64 and rounded once to the weight's dtype, which makes
    binarization exactly idempotent: for ``W = alpha * sign``, every partial sum
    ``k * alpha`` is exact in float64, so the scale comes back bit-for-bit.
    """
    return weight.detach().abs().flatten(1).to(torch.float64).mean(dim=1).to(weight.dtype)


def _sign(weight: torch.Tensor) -> torch.Tensor:
    """``sign`` with ``sign(0) = +1``."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


class _SteSign(torch.autograd.Function):
    # torch leaves Function.apply unannotated; it takes forward's arguments after ctx and returns its value
    apply: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _sign(weight)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor
        (weight,) = ctx.saved_tensors
        return grad_out * (weight.abs() <= 1).to(grad_out.dtype)


def ste_sign(weight: torch.Tensor) -> torch.Tensor:
    """``sign(W)`` (``sign(0) = +1``) with the clipped straight-through gradient."""
    return _SteSign.apply(weight)


def binarize_weight(weight: torch.Tensor) -> torch.Tensor:
    """``alpha * sign(W)`` with a per-output-channel ``alpha``; differentiable by STE."""
    alpha = binary_scale(weight).view(-1, *([1] * (weight.dim() - 1)))
    return alpha * ste_sign(weight)


class BinarizeWeight(nn.Module):
    """The parametrization module: ``weight -> binarize_weight(weight)``."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return binarize_weight(weight)


def weight_parametrizations(module: nn.Module) -> parametrize.ParametrizationList:
    """The parametrizations of ``module.weight``, which must be parametrized; ``.original`` is the latent weight."""
    # parametrize keeps a ModuleDict of ParametrizationList there; Module.__getattr__ is typed Tensor | Module
    parametrizations = cast(nn.ModuleDict, module.parametrizations)
    return cast(parametrize.ParametrizationList, parametrizations["weight"])


def is_binarized(module: nn.Module) -> bool:
    """Whether ``module.weight`` is currently binarized by this package."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(isinstance(p, BinarizeWeight) for p in weight_parametrizations(module))


def _resolve(model: nn.Module, names: list[str] | tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    resolved = []
    for name in names:
        module = modules.get(name)
        if module is None:
            raise CompressionError(
                f"no layer named {name!r}; binarizable layers: {[n for n, m in modules.items() if is_binarizable(m)]}"
            )
        if not is_binarizable(module):
            raise CompressionError(
                f"layer {name!r} is a {type(module).__name__}, which has no binarizable weight; "
                "choose a conv or linear layer"
            )
        resolved.append((name, module))
    return resolved


def binarize_(model: nn.Module, names: list[str] | tuple[str, ...]) -> nn.Module:
    """Binarize the named Conv2d/Linear layers of ``model`` in place (idempotent)."""
    for _, module in _resolve(model, names):
        if not is_binarized(module):
            parametrize.register_parametrization(module, "weight", BinarizeWeight())
    return model


def unbinarize_(model: nn.Module, names: list[str] | tuple[str, ...], keep_values: bool = False) -> nn.Module:
    """Undo :func:`binarize_` in place: the latent real weights come back, or with ``keep_values``
    the binarized values ``alpha * sign(W)`` become the float weights (the network computes exactly
    what it computed, and finetuning goes on from there)."""
    for _, module in _resolve(model, names):
        if is_binarized(module):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=keep_values)
    return model


def binarized_layers(model: nn.Module) -> list[str]:
    """Names of the currently binarized layers, in module order."""
    return [name for name, module in model.named_modules() if is_binarizable(module) and is_binarized(module)]


def candidate_layers(model: nn.Module, include_first_last: bool = False) -> list[str]:
    """Binarizable layers in module order; by default without the first and the last.

    The first layer sees the analog image and the last one produces the logits:
    both are small and sensitive, so they stay in float unless asked for.
    """
    names = [name for name, module in model.named_modules() if is_binarizable(module)]
    if include_first_last or len(names) <= 2:
        return names if include_first_last else []
    return names[1:-1]
