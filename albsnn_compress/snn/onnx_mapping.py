"""Each layer type's ONNX nodes, written against a small graph interface.

The ONNX exporter (:mod:`albsnn_compress.formats.onnx.export`) walks a
:class:`~albsnn_compress.snn.spec.SpikingNet` and, for every layer, calls the
``onnx`` function of its layer type (:mod:`albsnn_compress.snn.layer_types`)
with itself as the :class:`GraphEmitter`. The functions here only describe
*which* standard operators compute the layer; the emitter owns the graph, the
names, the time folding and the weight storage (float, or 1-bit bits unpacked
in the graph). So the spiking core stays free of any format code, and a new
layer type brings its ONNX form in the same entry that declares it.

Tensors between layers are ``[T*batch, ...]`` (time folded into the batch) or
``[batch, ...]`` shared by every step before the first neuron; stateless layers
do not care which. A neuron asks the emitter for its per-step inputs
(:meth:`GraphEmitter.split_steps`) and hands back per-step outputs
(:meth:`GraphEmitter.join_steps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from torch import nn

from albsnn_compress.errors import ExportError
from albsnn_compress.snn.neurons import LIF, RESET_MODES, neuron_constant

__all__ = [
    "GraphEmitter",
    "as_array",
    "pair",
    "conv_onnx",
    "linear_onnx",
    "batch_norm_onnx",
    "pool_onnx",
    "gap_onnx",
    "flatten_onnx",
    "lif_onnx",
    "lif_steps",
]

_ONNX_FLOAT = 1  # onnx.TensorProto.FLOAT (the core does not import onnx)


class GraphEmitter(Protocol):
    """What a layer's ONNX function may ask of the graph being built."""

    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        """Append one node with a single output named after ``hint``; return that name."""
        ...

    def initializer(self, hint: str, array: np.ndarray) -> str:
        """Store ``array`` bit for bit as a graph initializer; return its name."""
        ...

    def const(self, values: Any, dtype: type = np.float32) -> str:
        """A small shared constant; return its name."""
        ...

    def weight(self, name: str, module: nn.Module) -> str:
        """The layer's effective weight: float32, or 1-bit packed bits unpacked in the graph."""
        ...

    def take_input_scale(self) -> np.ndarray | None:
        """A per-channel factor (float64) the previous layer left for this one to absorb, once."""
        ...

    def split_steps(self, x: str, hint: str) -> list[str]:
        """Per-step tensors ``[batch, ...]`` of the flowing tensor ``x``, ``T`` of them."""
        ...

    def join_steps(self, steps: Sequence[str], hint: str) -> str:
        """Per-step outputs joined back into one time-folded tensor ``[T*batch, ...]``."""
        ...


def as_array(tensor: Any) -> np.ndarray:
    """A parameter or buffer as a float32 numpy array (detached, on the CPU)."""
    array: np.ndarray = tensor.detach().cpu().float().numpy()
    return array


def pair(value: int | tuple[int, ...]) -> list[int]:
    """A torch size argument as ONNX's two-element list."""
    return [value, value] if isinstance(value, int) else list(value)


def conv_onnx(graph: GraphEmitter, name: str, module: nn.Conv2d, x: str) -> str:
    """``Conv`` with the layer's (float or unpacked binary) weight and optional bias."""
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise ExportError(
            f"layer {name}: padding {module.padding!r} with mode {module.padding_mode!r} is not exportable; "
            "use integer zero padding (the spec's 'padding')"
        )
    inputs = [x, graph.weight(name, module)]
    if module.bias is not None:
        inputs.append(graph.initializer(f"{name}.bias", as_array(module.bias)))
    return graph.node(
        "Conv",
        inputs,
        f"{name}.y",
        kernel_shape=pair(module.kernel_size),
        strides=pair(module.stride),
        pads=pair(module.padding) * 2,
        dilations=pair(module.dilation),
        group=module.groups,
    )


def linear_onnx(graph: GraphEmitter, name: str, module: nn.Linear, x: str) -> str:
    """``Gemm`` with ``transB=1`` (torch stores ``[out, in]``)."""
    inputs = [x, graph.weight(name, module)]
    if module.bias is not None:
        inputs.append(graph.initializer(f"{name}.bias", as_array(module.bias)))
    return graph.node("Gemm", inputs, f"{name}.y", transB=1)


def batch_norm_onnx(graph: GraphEmitter, name: str, bn: nn.BatchNorm1d | nn.BatchNorm2d, x: str) -> str:
    """Inference-mode ``BatchNormalization``; absorbs the previous layer's per-channel scale if it left one.

    ``BN(alpha * y)`` with ``gamma' = gamma * alpha`` and ``mean' = mean / alpha`` is
    the same function of ``y`` (for ``alpha > 0``), computed in float64, rounded once.
    """
    if bn.running_mean is None or bn.running_var is None or bn.weight is None or bn.bias is None:
        raise ExportError(
            f"layer {name}: batch norm without running statistics or affine parameters cannot be exported; "
            "build it from the spec (track_running_stats and affine are on there)"
        )
    gamma, mean = (t.detach().cpu().double().numpy() for t in (bn.weight, bn.running_mean))
    scale = graph.take_input_scale()
    if scale is not None:
        gamma, mean = gamma * scale, mean / scale
    inputs = [
        x,
        graph.initializer(f"{name}.gamma", gamma.astype(np.float32)),
        graph.initializer(f"{name}.beta", as_array(bn.bias)),
        graph.initializer(f"{name}.mean", mean.astype(np.float32)),
        graph.initializer(f"{name}.var", as_array(bn.running_var)),
    ]
    return graph.node("BatchNormalization", inputs, f"{name}.y", epsilon=float(bn.eps))


def pool_onnx(graph: GraphEmitter, name: str, pool: nn.AvgPool2d | nn.MaxPool2d, x: str) -> str:
    """``AveragePool`` or ``MaxPool`` with torch's kernel, stride, padding and ceil mode."""
    attrs = {
        "kernel_shape": pair(pool.kernel_size),
        "strides": pair(pool.stride),
        "pads": pair(pool.padding) * 2,
        "ceil_mode": int(pool.ceil_mode),
    }
    if isinstance(pool, nn.AvgPool2d):
        if pool.divisor_override is not None:
            raise ExportError(f"layer {name}: AvgPool2d divisor_override has no ONNX equivalent; leave it unset")
        return graph.node("AveragePool", [x], f"{name}.y", count_include_pad=int(pool.count_include_pad), **attrs)
    if pool.return_indices:
        raise ExportError(f"layer {name}: MaxPool2d return_indices is not exportable; leave it off")
    return graph.node("MaxPool", [x], f"{name}.y", dilations=pair(pool.dilation), **attrs)


def gap_onnx(graph: GraphEmitter, name: str, _module: nn.Module, x: str) -> str:
    """Global average pooling: ``ReduceMean`` over H and W, dropping them."""
    return graph.node("ReduceMean", [x, graph.const([2, 3], np.int64)], f"{name}.y", keepdims=0)


def flatten_onnx(graph: GraphEmitter, name: str, _module: nn.Module, x: str) -> str:
    """``Flatten`` from axis 1 (each sample's features in row-major order)."""
    return graph.node("Flatten", [x], f"{name}.y", axis=1)


def lif_onnx(graph: GraphEmitter, name: str, neuron: LIF, x: str) -> str:
    """The neuron unrolled over the ``T`` steps; float spikes come out time-folded."""
    spikes = lif_steps(graph, graph.split_steps(x, f"{name}.x"), neuron, name)
    return graph.node("Cast", [graph.join_steps(spikes, f"{name}.fired")], f"{name}.y", to=_ONNX_FLOAT)


def _charge(graph: GraphEmitter, neuron: LIF, v: str | None, x: str, hint: str) -> str:
    """``H_t`` as nodes, in the same operation order as :meth:`LIF.charge` (so the same float32 results)."""
    tau = neuron_constant(graph, neuron.tau)
    if v is None:  # H_1 from V_0 = v_reset; terms with v_reset = 0 are left out (x + 0 = x)
        h = graph.node("Div", [x, tau], f"{hint}.q") if neuron.leak and neuron.decay_input else x
        return h if neuron.v_reset == 0.0 else graph.node("Add", [h, graph.const(neuron.v_reset)], f"{hint}.hr")
    if not neuron.leak:
        return graph.node("Add", [v, x], hint)
    leak = v if neuron.v_reset == 0.0 else graph.node("Sub", [v, graph.const(neuron.v_reset)], f"{hint}.dv")
    if neuron.decay_input:
        drive = graph.node("Div", [graph.node("Sub", [x, leak], f"{hint}.d"), tau], f"{hint}.q")
        return graph.node("Add", [v, drive], hint)
    decayed = graph.node("Sub", [v, graph.node("Div", [leak, tau], f"{hint}.q")], f"{hint}.decayed")
    return graph.node("Add", [decayed, x], hint)


def lif_steps(graph: GraphEmitter, inputs: Sequence[str], neuron: LIF, hint: str) -> list[str]:
    """Unroll a LIF neuron over per-step inputs; returns the per-step spikes as bool tensors.

    The arithmetic is that of :class:`albsnn_compress.snn.neurons.LIF` step by step:
    the charge of its variant, the spike ``H >= v_th`` (``H > v_th`` when strict),
    and the neuron's :class:`~albsnn_compress.snn.neurons.ResetMode` (a deferred
    rule applied to the next step's charged membrane).
    """
    reset = RESET_MODES[neuron.reset]
    compare = "Greater" if neuron.strict_threshold else "GreaterOrEqual"
    v_th = neuron_constant(graph, neuron.v_threshold)
    spikes: list[str] = []
    v: str | None = None
    for t, x in enumerate(inputs, start=1):
        h = _charge(graph, neuron, v, x, f"{hint}.h{t}")
        if reset.deferred and spikes:
            h = reset.onnx(graph, neuron, h, spikes[-1], f"{hint}.r{t}")
        spikes.append(graph.node(compare, [h, v_th], f"{hint}.s{t}"))
        if t < len(inputs):  # the membrane after the last step is never read
            v = h if reset.deferred else reset.onnx(graph, neuron, h, spikes[-1], f"{hint}.v{t}")
    return spikes
