"""Export a :class:`SpikingNet` to ONNX, its binarized weights packed at 1 bit, for stock onnxruntime.

The graph is built node by node with ``onnx.helper`` (not ``torch.onnx.export``)
so that we control the initializers and reproduce the LIF arithmetic exactly:

* ``images`` float32 ``[batch, C, H, W]`` in ``[0, 1]`` -> ``Sub`` mean -> ``Div`` std;
* the time steps are unrolled: stateless layers run once on the time-folded
  tensor ``[T*batch, ...]`` (before the first LIF the input is the same at every
  step, so they run once on ``[batch, ...]``), each LIF layer is unrolled step by
  step (:func:`formats.onnx_graph.lif_steps`);
* ``logits`` ``[batch, num_classes]`` is the mean over the ``T`` steps of the last layer.

With ``weights="packed"`` a binarized conv/linear stores its signs as a uint8
initializer in the layout of ``formats/bitpack.py`` and unpacks them inside the
graph (``BitShift`` + ``BitwiseAnd``, hence opset 18), then scales them by
``alpha`` per output channel. When such a layer has no bias, feeds a batch norm
directly and every ``alpha > 0``, the scale is folded into that batch norm
instead: ``BN(alpha * y)`` with ``gamma' = gamma * alpha`` and
``running_mean' = running_mean / alpha`` is the same function of ``y``.
``weights="float"`` stores plain float32 weights for runtimes without those
operators. See ``docs/onnx.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from albsnn_compress.atomic import atomic_write
from albsnn_compress.binarize import binarized_layers, binary_scale, is_binarized
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_signs
from albsnn_compress.formats.onnx_graph import GraphBuilder, lif_steps, unpack_signs
from albsnn_compress.snn.layers import (
    TimeAvgPool2d,
    TimeBatchNorm1d,
    TimeBatchNorm2d,
    TimeConv2d,
    TimeFlatten,
    TimeGlobalAvgPool,
    TimeLinear,
    TimeMaxPool2d,
)
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.versions import __version__

__all__ = ["export_onnx", "build_onnx_model", "WEIGHT_MODES", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

WEIGHT_MODES = ("packed", "float")
DEFAULT_OPSET = 18  # the first opset with BitwiseAnd; ReduceMean's axes input and Split's num_outputs need it too
INPUT_NAME = "images"
OUTPUT_NAME = "logits"

_BATCH_NORMS = (TimeBatchNorm1d, TimeBatchNorm2d)


@dataclass(frozen=True)
class _Flow:
    """The tensor between two layers: ``[T*batch, ...]`` if ``folded``, else ``[batch, ...]`` shared by all steps."""

    name: str
    folded: bool


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


class _Exporter:
    """Walks the layers of one model and emits their nodes."""

    def __init__(self, model: SpikingNet, packed: bool) -> None:
        self.builder = GraphBuilder()
        self.model = model
        self.steps = model.timesteps
        self.packed = packed
        self.bn_scale: np.ndarray | None = None  # alpha of the previous layer, to fold into this batch norm

    def run(self) -> None:
        b, model = self.builder, self.model
        b.fresh(INPUT_NAME)
        b.fresh(OUTPUT_NAME)
        mean = b.initializer("input.mean", model.input_mean.detach().cpu().float().numpy())
        std = b.initializer("input.std", model.input_std.detach().cpu().float().numpy())
        centered = b.node("Sub", [INPUT_NAME, mean], "input.centered")
        flow = _Flow(b.node("Div", [centered, std], "input.normalized"), folded=self.steps == 1)
        children = list(model.layers.named_children())
        for index, (name, module) in enumerate(children):
            following = children[index + 1][1] if index + 1 < len(children) else None
            flow = self.layer(name, module, flow, following)
        self.finish(flow)

    def layer(self, name: str, module: nn.Module, flow: _Flow, following: nn.Module | None) -> _Flow:
        b = self.builder
        if isinstance(module, (TimeConv2d, TimeLinear)):
            return _Flow(self.weighted(name, module, flow.name, following), flow.folded)
        if isinstance(module, _BATCH_NORMS):
            return _Flow(self.batch_norm(name, module, flow.name), flow.folded)
        if isinstance(module, LIF):
            return self.lif(name, module, flow)
        if isinstance(module, (TimeAvgPool2d, TimeMaxPool2d)):
            return _Flow(self.pool(name, module, flow.name), flow.folded)
        if isinstance(module, TimeGlobalAvgPool):
            axes = b.const([2, 3], np.int64)
            return _Flow(b.node("ReduceMean", [flow.name, axes], f"{name}.y", keepdims=0), flow.folded)
        if isinstance(module, TimeFlatten):
            return _Flow(b.node("Flatten", [flow.name], f"{name}.y", axis=1), flow.folded)
        raise ExportError(
            f"layer {name}: cannot export {type(module).__name__} to ONNX; supported layers are the spec's "
            "conv, linear, bn, lif, avgpool, maxpool, gap and flatten (rebuild the model from its spec)"
        )

    def weighted(self, name: str, module: nn.Conv2d | nn.Linear, x: str, following: nn.Module | None) -> str:
        """A conv or linear layer; its weight comes from floats or from unpacked bits."""
        b = self.builder
        inputs = [x, self.weight(name, module, following)]
        if module.bias is not None:
            inputs.append(b.initializer(f"{name}.bias", module.bias.detach().cpu().float().numpy()))
        if isinstance(module, nn.Linear):
            return b.node("Gemm", inputs, f"{name}.y", transB=1)
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise ExportError(
                f"layer {name}: padding {module.padding!r} with mode {module.padding_mode!r} is not exportable; "
                "use integer zero padding (the spec's 'padding')"
            )
        return b.node(
            "Conv", inputs, f"{name}.y",
            kernel_shape=_pair(module.kernel_size), strides=_pair(module.stride),
            pads=_pair(module.padding) * 2, dilations=_pair(module.dilation), group=module.groups,
        )

    def weight(self, name: str, module: nn.Conv2d | nn.Linear, following: nn.Module | None) -> str:
        """The name of the layer's effective weight: a float initializer or an unpacking subgraph."""
        b = self.builder
        weight = module.weight.detach().cpu().float()
        if not (self.packed and is_binarized(module)):
            return b.initializer(f"{name}.w", weight.numpy())
        bits = b.initializer(f"{name}.bits", np.frombuffer(pack_signs(weight), dtype=np.uint8))
        signs = unpack_signs(b, bits, weight.numel(), list(weight.shape), name)
        alpha = binary_scale(weight).numpy()
        if module.bias is None and isinstance(following, _BATCH_NORMS) and bool((alpha > 0).all()):
            self.bn_scale = alpha.astype(np.float64)
            return signs
        scale = b.initializer(f"{name}.alpha", alpha.reshape(-1, *[1] * (weight.dim() - 1)))
        return b.node("Mul", [signs, scale], f"{name}.scaled")

    def batch_norm(self, name: str, bn: nn.BatchNorm1d | nn.BatchNorm2d, x: str) -> str:
        """Inference-mode batch norm; folds in the pending ``alpha`` of the layer before."""
        if bn.running_mean is None or bn.running_var is None or bn.weight is None or bn.bias is None:
            raise ExportError(
                f"layer {name}: batch norm without running statistics or affine parameters cannot be exported; "
                "build it from the spec (track_running_stats and affine are on there)"
            )
        gamma, mean = (t.detach().cpu().double().numpy() for t in (bn.weight, bn.running_mean))
        if self.bn_scale is not None:
            gamma, mean = gamma * self.bn_scale, mean / self.bn_scale
            self.bn_scale = None
        b = self.builder
        inputs = [
            x,
            b.initializer(f"{name}.gamma", gamma.astype(np.float32)),
            b.initializer(f"{name}.beta", bn.bias.detach().cpu().float().numpy()),
            b.initializer(f"{name}.mean", mean.astype(np.float32)),
            b.initializer(f"{name}.var", bn.running_var.detach().cpu().float().numpy()),
        ]
        return b.node("BatchNormalization", inputs, f"{name}.y", epsilon=float(bn.eps))

    def lif(self, name: str, neuron: LIF, flow: _Flow) -> _Flow:
        """Unroll the neuron over the ``T`` steps; the spikes come out time-folded."""
        b = self.builder
        if self.steps == 1:
            inputs = [flow.name]
        elif flow.folded:
            inputs = b.node_multi("Split", [flow.name], f"{name}.x", self.steps, axis=0, num_outputs=self.steps)
        else:
            inputs = [flow.name] * self.steps
        spikes = lif_steps(b, inputs, neuron, name)
        fired = spikes[0] if self.steps == 1 else b.node("Concat", spikes, f"{name}.fired", axis=0)
        return _Flow(b.node("Cast", [fired], f"{name}.y", to=TensorProto.FLOAT), folded=True)

    def pool(self, name: str, pool: nn.AvgPool2d | nn.MaxPool2d, x: str) -> str:
        attrs = {
            "kernel_shape": _pair(pool.kernel_size),
            "strides": _pair(pool.stride),
            "pads": _pair(pool.padding) * 2,
            "ceil_mode": int(pool.ceil_mode),
        }
        if isinstance(pool, nn.AvgPool2d):
            if pool.divisor_override is not None:
                raise ExportError(f"layer {name}: AvgPool2d divisor_override has no ONNX equivalent; leave it unset")
            return self.builder.node("AveragePool", [x], f"{name}.y", count_include_pad=int(pool.count_include_pad), **attrs)
        if pool.return_indices:
            raise ExportError(f"layer {name}: MaxPool2d return_indices is not exportable; leave it off")
        return self.builder.node("MaxPool", [x], f"{name}.y", dilations=_pair(pool.dilation), **attrs)

    def finish(self, flow: _Flow) -> None:
        """``logits``: the mean over the ``T`` steps, as ``SpikingNet.forward`` takes it."""
        b = self.builder
        if self.steps == 1:
            b.nodes.append(helper.make_node("Identity", [flow.name], [OUTPUT_NAME]))
            return
        folded = flow.name if flow.folded else b.node("Concat", [flow.name] * self.steps, "output.steps", axis=0)
        shape = b.const([self.steps, -1, self.model.spec["num_classes"]], np.int64)
        per_step = b.node("Reshape", [folded, shape], "output.per_step")
        b.nodes.append(helper.make_node("ReduceMean", [per_step, b.const([0], np.int64)], [OUTPUT_NAME], keepdims=0))


def _check_request(model: SpikingNet, weights: str, opset: int) -> None:
    if not isinstance(model, SpikingNet):
        raise ExportError(f"expected a SpikingNet (from a checkpoint or container), got {type(model).__name__}")
    if weights not in WEIGHT_MODES:
        raise ExportError(f"unknown weights mode {weights!r}; choose one of {list(WEIGHT_MODES)}")
    newest = onnx.defs.onnx_opset_version()
    if type(opset) is not int or not DEFAULT_OPSET <= opset <= newest:
        raise ExportError(
            f"opset {opset!r} is not supported; the graph needs {DEFAULT_OPSET} (BitwiseAnd, ReduceMean axes input) "
            f"up to {newest}, the newest this onnx package knows"
        )


def build_onnx_model(model: SpikingNet, *, weights: str = "packed", opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The ONNX model of ``model`` in inference mode (batch-norm running statistics).

    Args:
        model: the network; binarized layers are found with :func:`is_binarized`.
        weights: ``"packed"`` (1 bit per binarized weight) or ``"float"`` (float32 everywhere).
        opset: ``ai.onnx`` opset, at least 18; the IR version is the lowest that opset allows.

    Returns:
        A self-contained ``onnx.ModelProto`` (no external data) with input ``images``
        ``[batch, C, H, W]`` and output ``logits`` ``[batch, num_classes]``.

    Raises:
        ExportError: an unknown weights mode or opset, or a layer ONNX cannot express.
    """
    _check_request(model, weights, opset)
    exporter = _Exporter(model, packed=weights == "packed")
    with torch.no_grad():
        exporter.run()
    channels, height, width = model.spec["input"]["shape"]
    graph = exporter.builder.graph(
        model.spec["name"],
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", model.spec["num_classes"]])],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="albsnn-compress", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    proto.doc_string = (
        f"{model.spec['name']} spiking network, T={model.timesteps} steps, weights={weights}, "
        f"binarized layers: {', '.join(binarized_layers(model)) or 'none'}"
    )
    return proto


def export_onnx(
    model: SpikingNet, path: str | os.PathLike[str], *, weights: str = "packed", opset: int = DEFAULT_OPSET
) -> None:
    """Write ``model`` as a self-contained ONNX file, atomically; see :func:`build_onnx_model`.

    The same model always gives the same bytes.

    Raises:
        ExportError: as :func:`build_onnx_model`, or if the model exceeds protobuf's 2 GiB limit.
    """
    proto = build_onnx_model(model, weights=weights, opset=opset)
    try:
        data = proto.SerializeToString()
    except ValueError as exc:
        raise ExportError(f"{path}: the ONNX model is too large for one protobuf file ({exc}); use weights='packed'") from None
    with atomic_write(path) as stream:
        stream.write(data)
