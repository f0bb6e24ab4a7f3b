"""Storage accounting: the bits every layer needs at inference, before and after binarization or quantization.

Computed, not measured: each tensor inference needs counts ``numel * bits``
(32 for float32, 1 for a binary weight, k for a k-bit one: :mod:`albsnn_compress.precision`),
and a binarized or quantized weight also pays for its per-channel scale (``C_out``
float32 values), which tools that report only "1 bit per weight" forget.
Batch-norm layers count all four tensors (weight, bias, running mean and
variance); ``num_batches_tracked`` is training state and is not stored. Which
tensors may be 1-bit (or k-bit) is the layer type's record
(:mod:`albsnn_compress.snn.layer_types`): a new layer type is accounted for with no
change here. The measured bytes of real files are the report's job; this module is
the model side of that comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from albsnn_compress.binarize import weight_parametrizations
from albsnn_compress.precision import FLOAT_BITS, weight_bits
from albsnn_compress.snn.layer_types import layer_type_of

__all__ = ["LayerStorage", "layer_storage", "saved_bits_at", "total_bits", "FLOAT_BITS", "BINARY_BITS"]

BINARY_BITS = 1
_TRAINING_ONLY = {"num_batches_tracked"}


@dataclass
class LayerStorage:
    """One layer's stored tensors, in bits, before and after compression."""

    name: str
    kind: str
    weight_shape: list[int]
    params: int
    binarizable: bool
    binarized: bool
    bits_before: int
    bits_after: int
    parts_after: dict[str, int] = field(default_factory=dict)
    weight_bits: int = FLOAT_BITS  # bits per weight after: 1 when binarized, k for a k-bit layer, else 32

    @property
    def saved_bits(self) -> int:
        return self.bits_before - self.bits_after


def _tensors(module: nn.Module) -> dict[str, int]:
    """Element counts of the tensors a module stores for inference (latent weight as ``weight``)."""
    counts: dict[str, int] = {}
    for key, parameter in module.named_parameters(recurse=False):
        counts[key] = parameter.numel()
    for key, buffer in module.named_buffers(recurse=False):
        if key not in _TRAINING_ONLY and key in module._buffers and key not in module._non_persistent_buffers_set:
            counts[key] = buffer.numel()
    if hasattr(module, "parametrizations"):
        counts["weight"] = weight_parametrizations(module).original.numel()
    return counts


def layer_storage(model: nn.Module, binarized: Iterable[str]) -> list[LayerStorage]:
    """Per-layer storage of ``model`` if the layers in ``binarized`` were 1-bit (the others at the
    precision they have: k bits for a layer :func:`~albsnn_compress.precision.set_precision_` gave k, else float).

    Only modules that store tensors are listed (conv, linear, batch norm), in module order.
    """
    chosen = set(binarized)
    rows = []
    for name, module in model.named_modules():
        counts = _tensors(module)
        if not counts or name.endswith("parametrizations.weight") or name.endswith(".parametrizations"):
            continue
        params = sum(counts.values())
        before = params * FLOAT_BITS
        parts = {key: n * FLOAT_BITS for key, n in counts.items()}
        record = layer_type_of(module)
        binarizable = record is not None and "weight" in record.binarizable
        is_binary = name in chosen and binarizable
        bits = BINARY_BITS if is_binary else weight_bits(module) if binarizable else FLOAT_BITS
        if bits != FLOAT_BITS:
            out_channels = counts["weight"] // max(1, _fan_in(module))
            parts["weight"] = counts["weight"] * bits
            parts["weight_scale"] = out_channels * FLOAT_BITS
        kind = record.label(module) if record is not None else type(module).__name__
        shape = list(module.weight.shape) if hasattr(module, "weight") and module.weight is not None else []
        after = sum(parts.values())
        rows.append(LayerStorage(name, kind, shape, params, binarizable, is_binary, before, after, parts, bits))
    return rows


def saved_bits_at(module: nn.Module, bits: int) -> int:
    """The bits a binarizable layer's weight saves at ``bits`` per weight against float32: the
    weight's ``(32 - bits)`` per element, less the per-channel float32 scale it then pays for (0 at 32)."""
    if bits >= FLOAT_BITS:
        return 0
    count = _tensors(module)["weight"]
    return count * (FLOAT_BITS - bits) - (count // max(1, _fan_in(module))) * FLOAT_BITS


def _fan_in(module: nn.Module) -> int:
    shape = cast(torch.Tensor, module.weight).shape  # a binarizable layer's weight: a tensor
    fan_in = 1
    for dim in shape[1:]:
        fan_in *= dim
    return fan_in


def total_bits(rows: list[LayerStorage]) -> tuple[int, int]:
    """``(bits_before, bits_after)`` summed over ``rows``."""
    return sum(r.bits_before for r in rows), sum(r.bits_after for r in rows)
