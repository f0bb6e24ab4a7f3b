r"""Weight precisions: 1, 2, 4 or 8 bits per weight with one scale per output channel, each with its STE.

A :class:`Precision` is one registered entry (:data:`PRECISIONS`, keyed by its bit
count as text); a new precision is one more entry here. Every entry maps a layer's
latent real weights :math:`W` (``[C_out, ...]``) to the weights the layer computes
with, as a :mod:`torch.nn.utils.parametrize` parametrization of ``weight`` (so the
original ``Parameter`` stays what optimizers and DDP track), and gives the integer
codes and scales a format stores.

* **1 bit** is :mod:`albsnn_compress.binarize`: :math:`\alpha_c \operatorname{sign}(W)`,
  :math:`\alpha_c = \operatorname{mean}|W_c|` (XNOR-Net, larq's ``MagnitudeAwareSign``).
* **k = 2, 4, 8 bits**: symmetric, narrow-range, per output channel. Codes
  :math:`q = \operatorname{clamp}(\operatorname{round}(W / s_c), -Q, Q)` with
  :math:`Q = 2^{k-1} - 1` (1, 7, 127) and weights :math:`s_c q`, :math:`s_c = M_c / Q`.

Why this quantizer: zero is a code (a pruned or tiny weight costs nothing in an
event-driven kernel), no zero point (an integer kernel sums codes and multiplies by
one scale per channel), and it is what the targets take as they are: CMSIS-NN's
int8 kernels use symmetric per-channel weights, ONNX ``DequantizeLinear`` with a
zero point of 0, Loihi 2 signed 8-bit weights, Xylo and Speck signed 8-bit weights.
The narrow range (``-127..127``, not ``-128``) keeps a weight's negation a code
too. 2 bits are therefore ternary (``-s, 0, +s``): one of the four codes unused,
the price of symmetry.

The clip :math:`M_c`: at 8 bits the channel's largest :math:`|W|` (127 steps leave a
rounding error under 0.4 % of it); at 2 and 4 bits, where one or seven steps cannot
span the outliers without losing the bulk, the fraction of it from a fixed grid
(:data:`CLIP_FRACTIONS`, 1.0 included) that minimises the channel's squared error
(MSE clipping), computed in float64.

Idempotent, bit for bit: :math:`M_c` is a float32 value and the largest code is
:math:`\pm Q`, so the quantized weights' largest magnitude is :math:`M_c` itself
(:math:`Q \cdot (M_c / Q)` rounds back to it), the same clip is chosen again (the
only one with zero error) and the same codes come out. A checkpoint stores the
weights as the layer computes them and re-applies the precision when it is read.

Backward (straight-through): :math:`\partial L / \partial W = \partial L / \partial W_q
\odot 1[|W| \le M_c]`, the scale a constant (recomputed at every forward), as for 1 bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from albsnn_compress.binarize import BinarizeWeight, weight_parametrizations
from albsnn_compress.errors import CompressionError
from albsnn_compress.registry import Registry
from albsnn_compress.snn.layer_types import is_binarizable

__all__ = [
    "FLOAT_BITS",
    "CLIP_FRACTIONS",
    "Precision",
    "PRECISIONS",
    "precision",
    "QuantizeWeight",
    "quantize_weight",
    "weight_codes",
    "set_precision_",
    "layer_bits",
    "weight_bits",
]

FLOAT_BITS = 32
"""The bits of a weight no precision applies to (float32)."""

CLIP_FRACTIONS = torch.arange(1, 65, dtype=torch.float64) / 64
"""The clips tried at 2 and 4 bits, as fractions of a channel's largest |W|: 1/64 .. 1 (1.0 exact)."""


@dataclass(frozen=True)
class Precision:
    """One weight precision: its bits, its largest code and whether its clip is searched."""

    bits: int
    search_clip: bool = False

    @property
    def max_code(self) -> int:
        """:math:`Q = 2^{k-1} - 1`: the codes run from ``-Q`` to ``Q`` (1 bit: the sign, ``Q = 1``)."""
        return max(1, (1 << (self.bits - 1)) - 1)

    @property
    def label(self) -> str:
        """``"1-bit"``, ``"4-bit"``: how reports and tables name it."""
        return f"{self.bits}-bit"

    def parametrization(self) -> nn.Module:
        """The module :func:`torch.nn.utils.parametrize.register_parametrization` takes."""
        return BinarizeWeight() if self.bits == 1 else QuantizeWeight(self.bits)


PRECISIONS: Registry[Precision] = Registry("precision", CompressionError, "in bits per weight")
for _precision in (Precision(1), Precision(2, search_clip=True), Precision(4, search_clip=True), Precision(8)):
    PRECISIONS.register(str(_precision.bits), _precision)


def precision(bits: int) -> Precision:
    """The registered precision of ``bits`` bits per weight.

    Raises:
        CompressionError: no precision of that many bits is registered (naming those that are).
    """
    return PRECISIONS.lookup(str(bits))


def _clip(flat: torch.Tensor, entry: Precision) -> torch.Tensor:
    """Each channel's clip :math:`M_c` (float64 holding float32 values), ``flat``: ``[C_out, n]`` float64.

    The grid is walked one clip at a time (memory of one weight copy, whatever the layer's size);
    a later clip replaces the best only when strictly better, so equal errors keep the first.
    """
    largest = flat.abs().amax(dim=1)
    if not entry.search_clip:
        return largest
    best_clip = largest.clone()
    best_error = torch.full_like(largest, torch.inf)
    for fraction in CLIP_FRACTIONS.tolist():
        clip = (largest * fraction).float().double()  # a float32 value, as the weights' largest magnitude will be
        step = torch.where(clip > 0, clip / entry.max_code, 1.0)[:, None]
        codes = torch.clamp(torch.round(flat / step), -entry.max_code, entry.max_code)
        error = ((codes * step - flat) ** 2).sum(dim=1)
        better = error < best_error
        best_clip = torch.where(better, clip, best_clip)
        best_error = torch.where(better, error, best_error)
    return best_clip


def weight_codes(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer codes (``int8``, ``weight``'s shape) and per-channel scales (float64, ``[C_out]``) of a
    ``bits``-bit weight (``bits >= 2``): the weight the layer computes is ``codes * scale``.

    Raises:
        CompressionError: ``bits`` is 1 (a sign and ``alpha``, see :mod:`albsnn_compress.binarize`) or not registered.
    """
    entry = precision(bits)
    if entry.bits == 1:
        raise CompressionError("1-bit weights have a sign and a scale alpha, not codes; use binarize.binary_scale")
    flat = weight.detach().double().flatten(1)
    clip = _clip(flat, entry)
    scale = torch.where(clip > 0, clip / entry.max_code, 1.0)
    codes = torch.clamp(torch.round(flat / scale[:, None]), -entry.max_code, entry.max_code)
    return codes.to(torch.int8).view(weight.shape), scale


class _SteQuantize(torch.autograd.Function):
    # torch leaves Function.apply unannotated; it takes forward's arguments after ctx and returns its value
    apply: ClassVar[Callable[[torch.Tensor, int], torch.Tensor]]

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, bits: int) -> torch.Tensor:
        codes, scale = weight_codes(weight, bits)
        shape = (-1, *([1] * (weight.dim() - 1)))
        clip = (scale * precision(bits).max_code).view(shape)
        ctx.save_for_backward(weight.detach().double().abs() <= clip)
        return (codes.double() * scale.view(shape)).to(weight.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        inside: torch.Tensor
        (inside,) = ctx.saved_tensors
        return grad_out * inside.to(grad_out.dtype), None


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The ``bits``-bit weights ``codes * scale`` (``bits >= 2``), differentiable by the clipped STE."""
    return _SteQuantize.apply(weight, bits)


class QuantizeWeight(nn.Module):
    """The parametrization module of a ``bits``-bit weight (``bits >= 2``; 1 bit is ``BinarizeWeight``)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if precision(bits).bits == 1:
            raise CompressionError("1-bit weights use binarize.BinarizeWeight (a sign and alpha), not QuantizeWeight")
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return quantize_weight(weight, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def weight_bits(module: nn.Module) -> int:
    """The bits per weight ``module`` computes with: its precision's, or :data:`FLOAT_BITS`."""
    if not parametrize.is_parametrized(module, "weight"):
        return FLOAT_BITS
    for entry in weight_parametrizations(module):
        if isinstance(entry, BinarizeWeight):
            return 1
        if isinstance(entry, QuantizeWeight):
            return entry.bits
    return FLOAT_BITS


def layer_bits(model: nn.Module) -> dict[str, int]:
    """Bits per weight of every binarizable layer of ``model``, in module order (32: float)."""
    return {name: weight_bits(module) for name, module in model.named_modules() if is_binarizable(module)}


def set_precision_(model: nn.Module, bits: Mapping[str, int], keep_values: bool = False) -> nn.Module:
    """Give each named layer its precision in place (:data:`FLOAT_BITS`: float), from its latent weights.

    A layer that already has another precision drops it first: from its latent weights,
    or with ``keep_values`` from the values it computed (the way :func:`binarize.unbinarize_` does).

    Raises:
        CompressionError: a name that is no binarizable layer, or bits no precision has.
    """
    modules = dict(model.named_modules())
    for name, wanted in bits.items():
        module = modules.get(name)
        if module is None or not is_binarizable(module):
            choices = [n for n, m in modules.items() if is_binarizable(m)]
            raise CompressionError(f"no conv or linear layer named {name!r}; choose one of {choices}")
        entry = None if wanted == FLOAT_BITS else precision(wanted)
        if weight_bits(module) == wanted:
            continue
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=keep_values)
        if entry is not None:
            parametrize.register_parametrization(module, "weight", entry.parametrization())
    return model
