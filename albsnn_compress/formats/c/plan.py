"""From a :class:`SpikingNet` to the straight line of C kernel calls, and the arena that holds them.

Each layer's record (:func:`~albsnn_compress.snn.layer_types.layer_type_of`) picks
its emitter in :data:`C_EMITTERS` by name; a layer whose type has no emitter is
refused, named. Emitters append operations (:mod:`albsnn_compress.formats.c.ops`)
and fuse where the arithmetic allows it:

* a batch norm right after a conv or linear layer folds into that layer's per-channel
  ``scale`` and ``bias`` (float64, rounded to float32 once); elsewhere it is its own
  ``x * scale + bias``;
* neurons right after a conv or linear layer (and its batch norm) run inside that
  layer's kernel, so its float output never exists as a map: the layer writes spikes;
* spikes are bits; an average pool of spikes is a count of spikes in bit planes with a
  divisor, which a binarized or k-bit layer after it folds into its scale.

A 2-, 4- or 8-bit layer (:mod:`albsnn_compress.precision`) keeps its integer codes (``weight_codes``, as the
ONNX export takes them) packed at k bits; its code scale takes the place of a binarized layer's ``alpha``, so
a batch norm after it folds the same way and the codes stay as they are.

Every neuron variant of :class:`~albsnn_compress.snn.neurons.LIF` has a C form: its reset rule
(:data:`RESET_C`), its charge rule (:data:`CHARGE_C`), a strict threshold, and ``tau`` and
``v_threshold`` per channel as const arrays (:func:`lif_values`). An input is an image
``[C, H, W]`` or a flat vector ``[F]``, which flows as ``F`` features of ``1 x 1`` (:func:`input_dims`).

A conv or linear layer over bit planes runs event by event (``albsnn_conv_events``,
``albsnn_conv_bit_events``, ``albsnn_conv_code_events``: work in proportion to the non-zero inputs) or
densely (``albsnn_conv_rows``, the AND + popcount ``albsnn_conv_bits``, ``albsnn_conv_code_rows``); both
give the same bits.
:func:`plan_model` picks per layer by the fraction of its inputs that are not zero, measured
on calibration images when they are given (:func:`input_densities`): events up to
:data:`EVENT_DENSITY`, dense above. Without calibration images spike maps are taken as sparse
(every such layer runs event by event). The same model and images give the same choice, so
the same C text.

The arena: operation ``i`` reads buffer ``i`` and writes buffer ``i + 1``; buffers
alternate between the arena's low end and its high end, with the operation's scratch
right after the low one. So ``ALBSNN_ARENA_BYTES`` is the largest
``input + scratch + output`` over the operations (each rounded up to 16 bytes): the
largest set of buffers that are live at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from albsnn_compress.binarize import binary_scale, is_binarized
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_signs
from albsnn_compress.formats.c.ops import (
    AffineOp,
    CodeWeights,
    ConvOp,
    CTensor,
    GapOp,
    LifOp,
    LifParams,
    NormalizeOp,
    Operation,
    PoolOp,
    StepMeanOp,
)
from albsnn_compress.precision import FLOAT_BITS, weight_bits, weight_codes
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet, is_flat_input

__all__ = [
    "WEIGHT_MODES",
    "KERNEL_CHOICES",
    "EVENT_DENSITY",
    "RESET_C",
    "CHARGE_C",
    "C_EMITTERS",
    "ALIGN_BYTES",
    "Placement",
    "Plan",
    "charge_rule",
    "lif_values",
    "input_dims",
    "input_densities",
    "plan_model",
]

WEIGHT_MODES = ("packed", "float")
KERNEL_CHOICES = ("auto", "dense", "events")
"""``plan_model(kernels=...)``: by measured density, dense everywhere, or event-driven wherever the input is bits."""

EVENT_DENSITY: dict[str, float] = {"bits": 0.5, "float": 1.0, "codes": 1.0}
"""The largest fraction of non-zero inputs at which ``kernels="auto"`` picks the event-driven kernel, for
1-bit weights (against AND + popcount), float weights (against the dense float kernel) and k-bit codes
(against the dense float kernel reading codes). Measured on one layer (64 -> 64 channels, 3x3, 14x14;
``python -m benchmarks.bench_c --crossover``, x86-64, gcc 12, ``-O3`` and ``-O3 -march=native``): the
bit-sliced 1-bit events win up to a density between 0.5 and 0.7, the float events at every density. The
k-bit pair is the float pair with integer codes (the dense kernel converts every input to a float, the event
kernel adds one row of codes per event), and its events too won at every density measured (``docs/deploy.md``)."""

_EXACT_SUMS = 1 << 24
"""The k-bit kernels sum ``code * count`` over bit planes as integers (int32 events, float dense): below 2^24
every one of them is a float, so both sums are exact and equal."""

ALIGN_BYTES = 16
_MAX_BYTES = 1 << 31  # the kernels index with uint32_t

RESET_C: dict[str, str] = {
    "hard": "ALBSNN_RESET_HARD",
    "soft": "ALBSNN_RESET_SOFT",
    "soft_deferred": "ALBSNN_RESET_SOFT_DEFERRED",
    "none": "ALBSNN_RESET_NONE",
}
"""The reset rules of :data:`~albsnn_compress.snn.neurons.RESET_MODES` that the C kernels compute, each
with its constant in ``albsnn_kernels.h`` (``albsnn_lif.reset``) and its ``case`` in ``lif_reset`` of
``albsnn_kernels.c``: hard ``spike ? v_reset : h`` (``H (1 - S) + v_reset S``), soft
``spike ? h - v_threshold : h`` (``H - v_th S``), none ``h``, and soft_deferred ``h`` with ``lif_step``
subtracting ``v_threshold`` from the next step's charged membrane when this step spiked (snnTorch's
order), as :mod:`~albsnn_compress.snn.neurons` computes them. A rule missing here is refused; adding
one means a constant and a case in the templates too (a test checks that every entry has both)."""

CHARGE_C: dict[str, str] = {
    "decay_input": "ALBSNN_CHARGE_DECAY_INPUT",
    "decay": "ALBSNN_CHARGE_DECAY",
    "if": "ALBSNN_CHARGE_IF",
}
"""The charge rules of :meth:`~albsnn_compress.snn.neurons.LIF.charge` (:func:`charge_rule` names a neuron's),
each with its constant in ``albsnn_kernels.h`` (``albsnn_lif.charge``) and its ``case`` in ``lif_charge`` of
``albsnn_kernels.c``: decay_input ``V + (X - (V - v_reset)) / tau``, decay ``V - (V - v_reset) / tau + X``
(``decay_input=False``), if ``V + X`` (``leak=False``)."""


@dataclass(frozen=True)
class Placement:
    """Byte offsets in the arena of one operation's input, output and scratch (``None``: the caller's buffer)."""

    x: int | None
    y: int | None
    scratch: int


@dataclass
class Plan:
    """Everything the C writer needs: the operations in order, where their buffers lie, and the byte totals."""

    ops: list[Operation]
    placements: list[Placement]
    arena_bytes: int
    weight_bytes: int

    @property
    def scratch_bytes(self) -> int:
        """``ALBSNN_SCRATCH_BYTES``: the largest scratch of one call (it lies inside the arena)."""
        return max((op.scratch_bytes for op in self.ops), default=0)


class _Planner:
    """Walks the layers; the emitters append operations and fuse into the last one."""

    def __init__(self, model: SpikingNet, packed: bool, kernels: str, densities: Mapping[str, float]) -> None:
        self.model, self.packed, self.steps = model, packed, model.timesteps
        self.kernels, self.densities = kernels, densities
        self.ops: list[Operation] = []
        self.neurons = 0
        self.flow = CTensor(*input_dims(model.spec), steps=1)

    def add(self, op: Operation) -> None:
        _check_size(op.label, op.out)
        self.ops.append(op)
        self.flow = op.out

    def ident(self, index: int, name: str) -> str:
        """A C identifier for layer ``index``: ``l3_conv2``."""
        return f"l{index}_{name if name.isascii() else 'layer'}"

    def open_conv(self) -> ConvOp | None:
        """The last operation if it is a conv or linear layer whose float output is what flows now."""
        last = self.ops[-1] if self.ops else None
        if isinstance(last, ConvOp) and last.lif is None and last.out == self.flow:
            return last
        return None


Emitter = Callable[[_Planner, int, str, nn.Module], None]


def _check_size(name: str, tensor: CTensor) -> None:
    if tensor.nbytes >= _MAX_BYTES or tensor.numel * tensor.steps >= _MAX_BYTES:
        raise ExportError(f"layer {name}: a {tensor.describe()} activation exceeds the C kernels' 2 GiB index range")


def _single(name: str, what: str, value: int | tuple[int, ...]) -> int:
    """A torch size argument that must be one number (square kernels, equal strides)."""
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ExportError(f"layer {name}: {what} {value!r} is not square; the C export supports square {what}s only")
    return int(values[0])


def _finite(name: str, what: str, array: np.ndarray) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ExportError(f"layer {name}: {what} holds NaN or infinity; retrain or fix the weights before exporting")
    return array


def _weighted(
    planner: _Planner, index: int, name: str, module: nn.Conv2d | nn.Linear, geometry: tuple[int, int, int, int]
) -> None:
    """A conv or linear layer (a linear layer is a 1x1 conv over a 1x1 map) with its weights."""
    kernel, stride, padding, groups = geometry
    flow = planner.flow
    height, width = (
        (flow.height + 2 * padding - kernel) // stride + 1,
        (flow.width + 2 * padding - kernel) // stride + 1,
    )
    weight = module.weight.detach().cpu().to(torch.float32)  # a binarized layer gives alpha * sign
    _finite(name, "weight", weight.numpy())
    out_channels = weight.shape[0]
    bias = (
        np.zeros(out_channels)
        if module.bias is None
        else _finite(name, "bias", module.bias.detach().cpu().double().numpy())
    )
    bits, float_weight, codes, scale = _stored_weights(planner, name, module, weight)
    if bits is not None and flow.is_bits and (weight[0].numel() * 2**flow.planes) >= _MAX_BYTES:
        raise ExportError(
            f"layer {name}: {weight[0].numel()} inputs of {flow.planes} count planes overflow the kernel's 32-bit sums"
        )
    out = CTensor(out_channels, height, width, steps=flow.steps)
    op = ConvOp(
        planner.ident(index, name),
        name,
        flow,
        out,
        kernel,
        stride,
        padding,
        groups,
        bits,
        float_weight,
        scale,
        bias,
        codes=codes,
    )
    if flow.is_bits:
        density = planner.densities.get(name)
        limit = EVENT_DENSITY["bits" if bits is not None else "codes" if codes is not None else "float"]
        events = planner.kernels == "events" or (planner.kernels == "auto" and (density is None or density <= limit))
        op.choose("events" if events else "dense", density)
    planner.add(op)


def _stored_weights(
    planner: _Planner, name: str, module: nn.Module, weight: torch.Tensor
) -> tuple[bytes | None, np.ndarray | None, CodeWeights | None, np.ndarray]:
    """What a layer stores, one of sign bits, float32 weights or k-bit codes, and its scale per output channel
    (float64): ``alpha`` for 1 bit, the code scale for k bits, 1 for float weights. Over bit planes the integer
    kernels sum counts, so the input's divisor folds into the scale of sign bits and codes."""
    flow = planner.flow
    divisor = flow.divisor if flow.is_bits else 1
    if planner.packed and is_binarized(module):
        return pack_signs(weight), None, None, binary_scale(weight).double().numpy() / divisor
    if planner.packed and weight_bits(module) < FLOAT_BITS:
        codes, scale = _codes(name, weight, weight_bits(module), flow)
        return None, None, codes, scale / divisor
    return None, weight.numpy(), None, np.ones(weight.shape[0])


def _codes(name: str, weight: torch.Tensor, bits: int, flow: CTensor) -> tuple[CodeWeights, np.ndarray]:
    """A k-bit layer's codes and code scales (float64), as the ONNX export takes them from the weights it computes
    with (quantizing them again gives the same codes: the precision is idempotent).

    Raises:
        ExportError: over bit planes, sums that could leave the range where the kernels add exact integers.
    """
    codes, scale = weight_codes(weight, bits)
    code_weights = CodeWeights(codes.numpy(), bits)
    largest = weight[0].numel() * code_weights.max_code * (2**flow.planes - 1)
    if flow.is_bits and largest >= _EXACT_SUMS:
        raise ExportError(
            f"layer {name}: {weight[0].numel()} inputs of {bits}-bit codes over {flow.planes} count planes can sum "
            f"to {largest}, past the 2^24 up to which the C kernels add exact integers; use fewer inputs or bits"
        )
    return code_weights, scale.numpy()


def _conv(planner: _Planner, index: int, name: str, conv: nn.Module) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise ExportError(f"layer {name}: expected a Conv2d, got {type(conv).__name__}")
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros" or _single(name, "dilation", conv.dilation) != 1:
        raise ExportError(
            f"layer {name}: padding {conv.padding!r} (mode {conv.padding_mode!r}, dilation {conv.dilation!r}) "
            "has no C kernel; use integer zero padding without dilation (the spec's 'padding')"
        )
    geometry = (
        _single(name, "kernel", conv.kernel_size),
        _single(name, "stride", conv.stride),
        _single(name, "padding", conv.padding),
        conv.groups,
    )
    _weighted(planner, index, name, conv, geometry)


def _linear(planner: _Planner, index: int, name: str, linear: nn.Module) -> None:
    if not isinstance(linear, nn.Linear) or planner.flow.height * planner.flow.width != 1:
        raise ExportError(f"layer {name}: a linear layer needs flat features; add a flatten or gap before it")
    _weighted(planner, index, name, linear, (1, 1, 0, 1))


def _batch_norm(planner: _Planner, index: int, name: str, bn: nn.Module) -> None:
    """Fold into the conv or linear layer before it, else a per-channel affine of its own."""
    if (
        not isinstance(bn, nn.modules.batchnorm._BatchNorm)
        or bn.running_mean is None
        or bn.running_var is None
        or bn.weight is None
        or bn.bias is None
    ):
        raise ExportError(
            f"layer {name}: batch norm without running statistics or affine parameters has no C form; "
            "build it from the spec"
        )
    gamma, beta, mean, var = (
        _finite(name, "batch norm", t.detach().cpu().double().numpy())
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    )
    factor = gamma / np.sqrt(var + float(bn.eps))
    shift = beta - mean * factor
    conv = planner.open_conv()
    if conv is not None:
        conv.scale, conv.bias = conv.scale * factor, conv.bias * factor + shift
        conv.label += f" + {name}"
        return
    flow = planner.flow
    out = CTensor(flow.channels, flow.height, flow.width, flow.steps)
    planner.add(AffineOp(planner.ident(index, name), name, flow, out, factor, shift))


def charge_rule(neuron: LIF) -> str:
    """The key of :data:`CHARGE_C` that ``neuron``'s ``leak`` and ``decay_input`` select (no leak: ``tau`` unused)."""
    if not neuron.leak:
        return "if"
    return "decay_input" if neuron.decay_input else "decay"


def lif_values(neuron: LIF, name: str, channels: int) -> tuple[float, ...]:
    """A setting of ``neuron`` (``tau``, ``v_threshold``) as the kernels hold it: one value for every channel, or
    one per channel of ``channels`` (a per-channel buffer whose values differ; equal values give one).

    Raises:
        ExportError: the setting is not a number or a buffer of ``channels`` values, or holds NaN or infinity.
    """
    value = getattr(neuron, name)
    if isinstance(value, torch.Tensor) and value.numel() in (1, channels):
        values = tuple(float(v) for v in value.detach().cpu().to(torch.float32).flatten().tolist())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        values = (float(value),)
    else:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ExportError(
            f"neuron setting {name} is {shape}, not one number or one per channel of {channels}; rebuild the model"
        )
    if not all(np.isfinite(values)):
        raise ExportError(f"neuron setting {name} holds NaN or infinity; retrain or fix it before exporting")
    return values[:1] if len(set(values)) == 1 else values


def _neuron(planner: _Planner, index: int, name: str, neuron: nn.Module) -> None:
    """Fused into the conv or linear layer before it when there is one; its output is a spike map."""
    if not isinstance(neuron, LIF):
        raise ExportError(f"layer {name}: expected a LIF neuron, got {type(neuron).__name__}")
    if neuron.reset not in RESET_C:
        raise ExportError(
            f"layer {name}: reset rule {neuron.reset!r} has no C form; the C export supports {list(RESET_C)}"
        )
    flow = planner.flow
    try:
        taus, thresholds = (lif_values(neuron, key, flow.channels) for key in ("tau", "v_threshold"))
    except ExportError as exc:
        raise ExportError(f"layer {name}: {exc}") from exc
    params = LifParams(
        taus,
        thresholds,
        neuron.v_reset,
        RESET_C[neuron.reset],
        neuron.reset,
        planner.neurons,
        charge=CHARGE_C[charge_rule(neuron)],
        strict=neuron.strict_threshold,
    )
    planner.neurons += 1
    out = CTensor(flow.channels, flow.height, flow.width, steps=planner.steps, planes=1)
    conv = planner.open_conv()
    if conv is not None:
        _check_size(name, out)
        conv.lif, conv.out = params, out
        conv.label += f" + {name}"
        planner.flow = out
        return
    planner.add(LifOp(planner.ident(index, name), name, flow, out, params))


def _pool(planner: _Planner, index: int, name: str, pool: nn.Module) -> None:
    """Average or max pooling; an average over bit planes keeps the count and multiplies the divisor."""
    if not isinstance(pool, (nn.AvgPool2d, nn.MaxPool2d)):
        raise ExportError(f"layer {name}: expected a pooling layer, got {type(pool).__name__}")
    is_max = isinstance(pool, nn.MaxPool2d)
    odd = _single(name, "padding", pool.padding) != 0 or pool.ceil_mode
    if isinstance(pool, nn.MaxPool2d):
        odd = odd or _single(name, "dilation", pool.dilation) != 1 or pool.return_indices
    else:
        odd = odd or pool.divisor_override is not None
    if odd:
        raise ExportError(
            f"layer {name}: pooling with padding, ceil_mode, dilation or a divisor override has no C kernel; "
            "use the spec's pools"
        )
    kernel, stride = _single(name, "kernel", pool.kernel_size), _single(name, "stride", pool.stride)
    flow = planner.flow
    planes, divisor = flow.planes, flow.divisor
    if flow.is_bits and not is_max:
        planes, divisor = ((2**flow.planes - 1) * kernel * kernel).bit_length(), flow.divisor * kernel * kernel
    if planes > 31 or divisor >= _MAX_BYTES:
        raise ExportError(
            f"layer {name}: {planes} count planes over spikes is more than the C kernels hold; pool fewer times"
        )
    height, width = (flow.height - kernel) // stride + 1, (flow.width - kernel) // stride + 1
    out = CTensor(flow.channels, height, width, flow.steps, planes, divisor)
    planner.add(PoolOp(planner.ident(index, name), name, flow, out, kernel, stride, is_max))


def _gap(planner: _Planner, index: int, name: str, _module: nn.Module) -> None:
    flow = planner.flow
    planner.add(GapOp(planner.ident(index, name), name, flow, CTensor(flow.channels, 1, 1, flow.steps)))


def _flatten(planner: _Planner, _index: int, _name: str, _module: nn.Module) -> None:
    """No operation: a map's channel-major order is already the flattened order, floats or bits."""
    flow = planner.flow
    planner.flow = CTensor(flow.numel, 1, 1, flow.steps, flow.planes, flow.divisor)


C_EMITTERS: dict[str, Emitter] = {
    "conv": _conv,
    "linear": _linear,
    "bn": _batch_norm,
    "lif": _neuron,
    "avgpool": _pool,
    "maxpool": _pool,
    "gap": _gap,
    "flatten": _flatten,
}
"""The C emitter of each layer type, by the name of its record in the layer-type registry."""


def input_dims(spec: dict[str, Any]) -> tuple[int, int, int]:
    """The C input's ``(C, H, W)`` (``ALBSNN_INPUT_C``, ``_H``, ``_W``): a spec's image shape, or a flat input
    ``[F]`` as ``F`` features of ``1 x 1`` (the layout of features between the kernels)."""
    shape = spec["input"]["shape"]
    return (shape[0], 1, 1) if is_flat_input(spec) else (shape[0], shape[1], shape[2])


def _normalize(planner: _Planner, inp: dict[str, Any]) -> None:
    """``(x - mean) / std`` into the arena: per channel of an image, per feature of a flat input.

    A flat input with one ``mean`` and one ``std`` (for every feature) is normalized as one channel of ``F``
    values, which then flow on as ``F`` features: the same floats, two numbers of flash instead of ``2 F``.
    """
    mean, std = (np.asarray(inp[key], dtype=np.float32) for key in ("mean", "std"))
    features = planner.flow
    if len(inp["shape"]) == 3 or mean.size == std.size == features.channels:
        planner.add(NormalizeOp("input", "input", features, features, mean, std))
    elif mean.size == std.size == 1:
        row = CTensor(1, 1, features.channels, steps=1)
        planner.add(NormalizeOp("input", "input", row, row, mean, std))
        planner.flow = features
    else:  # one number for one of them, one per feature for the other
        mean, std = (np.broadcast_to(values, features.channels).copy() for values in (mean, std))
        planner.add(NormalizeOp("input", "input", features, features, mean, std))


def _reads_pixel_major(op: Operation) -> bool:
    """An event-driven conv or linear layer in one group: it reads pixel-major rows padded by its own padding."""
    return isinstance(op, ConvOp) and op.events and op.groups == 1


def _writes_pixel_major(op: Operation) -> bool:
    """A conv or linear layer whose neurons a firing range decides (one time step; not the popcount kernel, not a
    1x1 conv run as one long row): its one-step path can write each output pixel's spikes as one run."""
    return (
        isinstance(op, ConvOp)
        and op.lif is not None
        and op.out.steps == 1
        and not op.uses_popcount
        and op.views[1] == op.out
    )


def _pixel_major(ops: list[Operation]) -> None:
    """Spike maps between a conv that writes them by firing ranges and an event-driven conv (directly, or through a
    pooling of spikes) flow as pixel-major rows (``CTensor.pad``): the reader's kernel reads them as they are instead
    of gathering a channel-major map, the writer stores a pixel's spikes as one run, and the pooling adds pixels."""

    def link(writer: Operation, reader: Operation, pad: int) -> None:
        writer.out = reader.inp = replace(writer.out, pad=pad)

    for i, op in enumerate(ops[:-1]):
        reader = ops[i + 1]
        if not _writes_pixel_major(op) or reader.inp != op.out:  # a flatten between them reads the map as features
            continue
        if _reads_pixel_major(reader):
            assert isinstance(reader, ConvOp)
            link(op, reader, reader.padding)
        elif (
            isinstance(reader, PoolOp)
            and reader.inp.planes == 1
            and i + 2 < len(ops)
            and _reads_pixel_major(ops[i + 2])
            and ops[i + 2].inp == reader.out
        ):
            after = ops[i + 2]
            assert isinstance(after, ConvOp)
            link(op, reader, 0)
            link(reader, after, after.padding)


def _align(size: int) -> int:
    return -(-size // ALIGN_BYTES) * ALIGN_BYTES


def _place(ops: list[Operation]) -> tuple[list[Placement], int]:
    """Ping-pong the buffers between the two ends of the arena; scratch follows the low one."""
    sizes = [op.out.nbytes for op in ops]
    sizes[-1] = 0  # the logits are the caller's
    arena = 0
    for i, op in enumerate(ops):
        live = _align(sizes[i - 1]) if i else 0
        arena = max(arena, live + _align(op.scratch_bytes) + (0 if op.in_place else _align(sizes[i])))
    placements, low = [], False  # low: the current buffer lies at offset 0
    x: int | None = None
    for i, op in enumerate(ops):
        out_low = low if op.in_place else not low
        y = None if i == len(ops) - 1 else 0 if out_low else arena - _align(sizes[i])
        below = [size for size, at_low in ((sizes[i - 1] if i else 0, low), (sizes[i], out_low)) if at_low]
        placements.append(Placement(x, y, _align(max(below, default=0))))
        x, low = y, out_low
    return placements, arena


def input_densities(model: SpikingNet, images: torch.Tensor) -> dict[str, float]:
    """The fraction of non-zero inputs of every conv and linear layer of ``model`` over ``images``.

    Args:
        model: the network (run in eval mode, without gradients; its mode is restored).
        images: ``[B, C, H, W]`` in ``[0, 1]`` (a flat model: ``[B, F]``, or samples of ``F`` elements).

    Returns:
        layer name -> non-zero elements / elements of its input, over every image and time step.
    """
    counts: dict[str, list[int]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            total = counts.setdefault(name, [0, 0])
            total[0] += int(torch.count_nonzero(inputs[0]))
            total[1] += inputs[0].numel()

        return record

    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.layers.named_children()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return {name: nonzero / max(total, 1) for name, (nonzero, total) in counts.items()}


def plan_model(
    model: SpikingNet, *, weights: str = "packed", calibration: torch.Tensor | None = None, kernels: str = "auto"
) -> Plan:
    """The operations, arena placements and byte totals of ``model``'s C form (eval mode arithmetic).

    Args:
        model: the network; binarized layers are found with :func:`is_binarized`.
        weights: ``"packed"`` (binarized layers keep 1 bit per weight: AND + popcount or bit-sliced
            events over spikes; 2-, 4- and 8-bit layers their codes: integer sums, ``albsnn_conv_code_rows``
            and ``albsnn_conv_code_events``) or ``"float"`` (every weight float32, the float kernels).
        calibration: images ``[B, C, H, W]`` (a flat model: ``[B, F]``, or samples of ``F`` elements) to
            measure each layer's input density on (:func:`input_densities`); ``None``: spike maps are taken as sparse.
        kernels: :data:`KERNEL_CHOICES`: ``"auto"`` (events up to :data:`EVENT_DENSITY`, else dense),
            ``"dense"`` or ``"events"`` (for every layer over bit planes). With calibration images each
            such layer records its measured density (``ConvOp.density``) whatever the choice.

    Raises:
        ExportError: an unknown weights mode or kernel choice, or a layer the C kernels cannot compute (named).
    """
    if not isinstance(model, SpikingNet):
        raise ExportError(f"expected a SpikingNet (from a checkpoint or container), got {type(model).__name__}")
    if weights not in WEIGHT_MODES:
        raise ExportError(f"unknown weights mode {weights!r}; choose one of {list(WEIGHT_MODES)}")
    if kernels not in KERNEL_CHOICES:
        raise ExportError(f"unknown kernel choice {kernels!r}; choose one of {list(KERNEL_CHOICES)}")
    densities = input_densities(model, calibration) if calibration is not None else {}
    planner = _Planner(model, weights == "packed", kernels, densities)
    _normalize(planner, model.spec["input"])
    with torch.no_grad():
        for index, (name, module) in enumerate(model.layers.named_children()):
            record = layer_type_of(module)
            emitter = C_EMITTERS.get(record.name) if record is not None else None
            if emitter is None:
                kind = f" (layer type {record.name})" if record is not None else ""
                raise ExportError(
                    f"layer {name}: the C export cannot express {type(module).__name__}{kind}; "
                    f"supported layer types: {', '.join(C_EMITTERS)}"
                )
            emitter(planner, index, name, module)
    flow = planner.flow
    if flow.numel != model.spec["num_classes"]:
        raise ExportError(f"the last layer gives {flow.numel} values, expected {model.spec['num_classes']} logits")
    planner.ops.append(StepMeanOp("logits", "time-mean", flow, CTensor(flow.numel, 1, 1, 1)))
    _pixel_major(planner.ops)
    placements, arena = _place(planner.ops)
    weight_bytes = sum(array.nbytes for op in planner.ops for array in op.arrays())
    return Plan(planner.ops, placements, arena, weight_bytes)
