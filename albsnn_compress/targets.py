"""Hardware targets: which precisions a chip's weight layers take, whether float layers may stay, what is unchecked.

A :class:`Target` is one registered entry (:data:`TARGETS`, keyed by its name); a new
chip is one more entry here. ``compress --target NAME`` (``SearchConfig.target``) limits the
search to the target's precisions and, where the chip has no float synapses, gives every
conv and linear layer a precision (docs/method.md, "Hardware targets");
:func:`check_target` verifies a model against a target bit for bit.

What a profile knows, and where from:

* **loihi2**: Intel Loihi 2 takes signed weights of at most 8 bits, scaled by one
  power-of-two weight exponent per synapse group (lava's ``lava.utils.weightutils``:
  ``optimize_weight_bits``, ``num_weight_bits``, ``weight_exp``), and has no float synapses.
* **xylo**: SynSense Xylo takes signed 8-bit weights and per-neuron integer thresholds
  (rockpool's ``transform.quantize_methods``: ``bits_per_weight=8``, ``channel_quantize``); no float.
* **speck**: SynSense Speck (DYNAP-CNN cores) takes signed 8-bit weights and 16-bit states
  (sinabs' ``backend.dynapcnn.discretize``: ``DYNAPCNN_WEIGHT_PRECISION_BITS = 8``), one
  discretization scale per layer; no float.
* **cortex-m**: an Arm Cortex-M runs CMSIS-NN's int8 and packed int4 kernels and this package's
  C export (1-bit and k-bit code kernels, and float kernels, fast with an FPU), so float layers
  may stay.

Every registered precision fits a signed 8-bit weight: a k-bit code lies in ``-Q..Q``
(:mod:`albsnn_compress.precision`, ``Q = 127`` at 8 bits) and a 1-bit weight is ``±alpha``,
codes ``±1``. Each profile therefore takes 1, 2, 4 and 8 bits; on Xylo and Speck, which store
every weight in 8 bits, fewer bits shrink the file, not the chip's weight memory.

What a profile cannot check is said in its ``unchecked`` list (and printed by ``compress
--target``): above all, our scales are one float per output channel, which none of the three
neuromorphic chips stores as such; they must be absorbed by the neurons (per-neuron thresholds
or gains) or requantized onto the chip's own scale by its toolchain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from albsnn_compress.binarize import binary_scale
from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import FLOAT_BITS, precision, weight_bits, weight_codes
from albsnn_compress.registry import Registry
from albsnn_compress.snn.layer_types import is_binarizable

__all__ = ["Target", "TARGETS", "check_target"]


@dataclass(frozen=True)
class Target:
    """One chip's profile.

    Attributes:
        name: what ``--target`` takes (``"loihi2"``).
        precisions: the bits per weight a conv or linear layer may take on it, sorted, each registered.
        float_layers: whether a layer may stay in float (32 bits) on it.
        description: one line for help texts and tables.
        unchecked: the chip's constraints this profile cannot check, one sentence each.
        code_bits: the chip's signed integer weight width: every precision's codes must fit
            ``-2^(code_bits-1) .. 2^(code_bits-1) - 1`` (checked when the profile is built).

    Raises:
        CompressionError: no precisions, a precision that is not registered or not sorted, or one whose
            codes do not fit ``code_bits``.
    """

    name: str
    precisions: tuple[int, ...]
    float_layers: bool
    description: str
    unchecked: tuple[str, ...]
    code_bits: int = 8

    def __post_init__(self) -> None:
        if not self.precisions or list(self.precisions) != sorted(set(self.precisions)):
            raise CompressionError(
                f"target {self.name!r}: precisions must be sorted bits, each once; got {self.precisions}"
            )
        largest = (1 << (self.code_bits - 1)) - 1
        for bits in self.precisions:
            if precision(bits).max_code > largest:
                raise CompressionError(
                    f"target {self.name!r}: {bits}-bit codes reach ±{precision(bits).max_code}, past the "
                    f"{self.code_bits}-bit signed weights it takes"
                )

    def takes(self, bits: int) -> bool:
        """Whether a layer of ``bits`` per weight (:data:`~albsnn_compress.precision.FLOAT_BITS`: float) runs on it."""
        return bits in self.precisions or (bits == FLOAT_BITS and self.float_layers)

    def allowed(self, precisions: tuple[int, ...]) -> tuple[int, ...]:
        """The ``precisions`` (a search's) that the target takes, in order.

        Raises:
            CompressionError: it takes none of them.
        """
        allowed = tuple(bits for bits in precisions if bits in self.precisions)
        if not allowed:
            raise CompressionError(
                f"target {self.name!r} takes {_labels(self.precisions)} layers, none of precisions "
                f"{list(precisions)}; add one of them (--precisions)"
            )
        return allowed


def _labels(precisions: tuple[int, ...]) -> str:
    """``1-, 2-, 4- or 8-bit``."""
    *head, last = (str(bits) for bits in precisions)
    return f"{'-, '.join(head)}- or {last}-bit" if head else f"{last}-bit"


_PER_CHANNEL_SCALES = (
    "per-output-channel scales: {chip} stores integer weights without them, so each channel's float scale must be "
    "absorbed by its neurons ({how}); the profile does not do or check that"
)
_BATCH_NORM = "batch norm and biases folded into the weights and thresholds by the vendor's conversion, in its integers"

TARGETS: Registry[Target] = Registry("target", CompressionError)
for _target in (
    Target(
        "loihi2",
        (1, 2, 4, 8),
        float_layers=False,
        description="Intel Loihi 2 (lava): signed weights of at most 8 bits, no float synapses",
        unchecked=(
            _PER_CHANNEL_SCALES.format(
                chip="Loihi 2 scales a synapse group by one power-of-two weight exponent (lava weightutils) and",
                how="a per-neuron threshold or gain",
            ),
            "neuron dynamics in fixed point: thresholds, decays and membrane states quantized by the lava conversion",
            _BATCH_NORM,
            "core resources: neurons, synapses and fan-in per core, and how convolutions are laid out over cores",
        ),
    ),
    Target(
        "xylo",
        (1, 2, 4, 8),
        float_layers=False,
        description="SynSense Xylo (rockpool): signed 8-bit weights, per-neuron thresholds, no float",
        unchecked=(
            _PER_CHANNEL_SCALES.format(
                chip="Xylo", how="per-neuron integer thresholds, as rockpool's channel_quantize"
            ),
            "layer types and size: Xylo runs dense input, recurrent and output weights over a bounded number of "
            "neurons; convolutions must be unrolled to dense weights and the network must fit the chip",
            "time constants as integer bit-shift decays and 16-bit thresholds",
            _BATCH_NORM,
        ),
    ),
    Target(
        "speck",
        (1, 2, 4, 8),
        float_layers=False,
        description="SynSense Speck (sinabs, DYNAP-CNN cores): signed 8-bit weights, no float",
        unchecked=(
            "per-output-channel scales: sinabs discretizes a layer's weights, biases and thresholds with one "
            "scale per layer, so channels with different scales must be requantized onto one (exact only when "
            "they share it); the profile does not do or check that",
            "layer types and size: convolutions with integrate-and-fire neurons on a fixed number of cores with "
            "bounded kernel and neuron memory",
            "16-bit neuron states and thresholds; a LIF leak, batch norm and biases folded or approximated by the "
            "conversion",
        ),
    ),
    Target(
        "cortex-m",
        (1, 2, 4, 8),
        float_layers=True,
        description="Arm Cortex-M (CMSIS-NN int8/int4, this package's C export): integer codes, float layers allowed",
        unchecked=(
            "flash and RAM: the C export reports its const and arena bytes; whether they fit the device is not checked",
            "float layers run at speed only with an FPU (Cortex-M4F, M7, M33 with FPU, ...)",
            "CMSIS-NN kernels apply per-channel scales as fixed-point multipliers and shifts, an approximation of "
            "the float scales this package's C export applies",
        ),
    ),
):
    TARGETS.register(_target.name, _target)


def check_target(model: nn.Module, target: Target) -> None:
    """Refuse ``model`` unless every conv and linear layer runs on ``target`` exactly as it computes.

    Each layer's bits must be among the target's (float only where it takes float layers), and
    each k-bit layer's weights, as the layer computes them, must be integer codes times one scale
    per output channel, bit for bit: :func:`~albsnn_compress.precision.weight_codes` (codes within
    the precision's ``-Q..Q``, which fits the target's ``code_bits``: :class:`Target` checks that)
    times its scales reproduces them with ``torch.equal``; a 1-bit layer's weights are
    ``±alpha`` (codes ``±1``); every weight is finite. A non-finite weight is what breaks this in
    practice (the precisions are idempotent bit for bit otherwise): a latent ``inf`` makes an 8-bit
    channel compute ``nan`` and a 1-bit channel ``±inf``.

    Raises:
        CompressionError: one line naming the first layer that does not run on the target, its
            bits, and what to do.
    """
    for name, module in model.named_modules():
        if not is_binarizable(module):
            continue
        bits = weight_bits(module)
        if not target.takes(bits):
            raise CompressionError(_not_taken(name, bits, target))
        if bits != FLOAT_BITS and not _representable(module.weight.detach(), bits):
            raise CompressionError(
                f"layer {name}: its {bits}-bit weights are not finite integer codes times one scale per output "
                f"channel, so target {target.name!r} cannot run it as it computes; compress it again from a model "
                "with finite weights"
            )


def _not_taken(name: str, bits: int, target: Target) -> str:
    """Why layer ``name`` at ``bits`` does not run on ``target``, and what to do, in one line."""
    what = "float (32 bits per weight)" if bits == FLOAT_BITS else f"{bits}-bit"
    return (
        f"layer {name} is {what}, which target {target.name!r} does not take (it takes {_labels(target.precisions)} "
        f"layers{' or float' if target.float_layers else ' only'}); compress the model with target {target.name!r} "
        f"(--target {target.name}) so every layer gets a precision it takes"
    )


def _representable(weight: torch.Tensor, bits: int) -> bool:
    """Whether ``weight`` (``[C_out, ...]``, as the layer computes it) is finite and exactly codes times per-channel
    scales (an infinite scale is no scale a chip can hold, though ``±1 * inf`` reproduces ``±inf``)."""
    shape = (-1, *([1] * (weight.dim() - 1)))
    if bits == 1:
        signs = torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)
        rebuilt = signs * binary_scale(weight).view(shape)
    else:
        codes, scale = weight_codes(weight, bits)
        rebuilt = (codes.double() * scale.view(shape)).to(weight.dtype)
    return bool(torch.isfinite(weight).all()) and torch.equal(rebuilt, weight)
