"""Export a :class:`SpikingNet` to ONNX, its binarized weights packed at 1 bit, for stock onnxruntime.

The graph is built node by node with ``onnx.helper`` (not ``torch.onnx.export``)
so that we control the initializers and reproduce the LIF arithmetic exactly;
each layer's nodes come from its layer type (:mod:`albsnn_compress.snn.onnx_mapping`):

* ``images`` float32 ``[batch, C, H, W]`` in ``[0, 1]`` (a flat spec: ``[batch, F]``) -> ``Sub`` mean -> ``Div``
  std (one value per channel, or for a flat spec one for all features or one per feature);
* the time steps are unrolled: stateless layers run once on the time-folded
  tensor ``[T*batch, ...]`` (before the first LIF the input is the same at every
  step, so they run once on ``[batch, ...]``), each LIF layer is unrolled step by
  step (:func:`formats.onnx_graph.lif_steps`);
* ``logits`` ``[batch, num_classes]`` is the mean over the ``T`` steps of the last layer.

With ``weights="packed"`` a binarized conv/linear stores its signs as a uint8
initializer in the layout of ``albsnn_compress/formats/bitpack.py`` and unpacks them inside the
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from albsnn_compress.binarize import binarized_layers, binary_scale
from albsnn_compress.errors import ExportError
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.formats.bitpack import pack_codes, pack_signs
from albsnn_compress.formats.onnx.graph import GraphBuilder, unpack_codes, unpack_signs
from albsnn_compress.precision import FLOAT_BITS, weight_bits, weight_codes
from albsnn_compress.snn.layer_types import LAYER_TYPES, layer_type_of
from albsnn_compress.snn.onnx_mapping import as_array
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.versions import __version__

__all__ = ["export_onnx", "build_onnx_model", "WEIGHT_MODES", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

WEIGHT_MODES = ("packed", "float")
DEFAULT_OPSET = 18  # the first opset with BitwiseAnd; ReduceMean's axes input and Split's num_outputs need it too
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class _Flow:
    """The tensor between two layers: ``[T*batch, ...]`` if ``folded``, else ``[batch, ...]`` shared by all steps."""

    name: str
    folded: bool


class _Exporter:
    """Walks the layers of one model and lets each layer type emit its nodes.

    It is the :class:`~albsnn_compress.snn.onnx_mapping.GraphEmitter` the layer
    types' ``onnx`` functions write to: it owns names, time folding and how
    weights are stored.
    """

    def __init__(self, model: SpikingNet, packed: bool) -> None:
        self.builder = GraphBuilder()
        self.model = model
        self.steps = model.timesteps
        self.packed = packed
        self.flow = _Flow(INPUT_NAME, folded=False)
        self.following: nn.Module | None = None
        self.input_scale: np.ndarray | None = None  # alpha of the previous layer, for the next one to absorb

    def run(self) -> None:
        b, model = self.builder, self.model
        b.fresh(INPUT_NAME)
        b.fresh(OUTPUT_NAME)
        mean = b.initializer("input.mean", as_array(model.input_mean))
        std = b.initializer("input.std", as_array(model.input_std))
        centered = b.node("Sub", [INPUT_NAME, mean], "input.centered")
        self.flow = _Flow(b.node("Div", [centered, std], "input.normalized"), folded=self.steps == 1)
        children = list(model.layers.named_children())
        for index, (name, module) in enumerate(children):
            self.following = children[index + 1][1] if index + 1 < len(children) else None
            self.layer(name, module)
        self.finish()

    def layer(self, name: str, module: nn.Module) -> None:
        """Emit one layer through its layer type's ONNX function."""
        record = layer_type_of(module)
        if record is None:
            raise ExportError(
                f"layer {name}: cannot export {type(module).__name__} to ONNX; supported layer types are "
                f"{', '.join(LAYER_TYPES)} (rebuild the model from its spec)"
            )
        output = record.onnx(self, name, module, self.flow.name)
        self.flow = _Flow(output, folded=self.flow.folded or record.temporal)

    # -- the GraphEmitter interface -------------------------------------------------
    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        return self.builder.node(op, inputs, hint, **attrs)

    def initializer(self, hint: str, array: np.ndarray) -> str:
        return self.builder.initializer(hint, array)

    def const(self, values: Any, dtype: type = np.float32) -> str:
        return self.builder.const(values, dtype)

    def weight(self, name: str, module: nn.Module) -> str:
        """The layer's effective weight: a float initializer, or packed bits or k-bit codes unpacked in the graph.

        A binarized (k-bit) layer without bias whose next layer can absorb a per-channel
        factor leaves ``alpha`` (its scale) to it (``take_input_scale``) instead of a ``Mul``.
        """
        b = self.builder
        weight = cast(torch.Tensor, module.weight).detach().cpu().float()
        bits = weight_bits(module)
        if not self.packed or bits == FLOAT_BITS:
            return b.initializer(f"{name}.w", weight.numpy())
        if bits == 1:
            packed = b.initializer(f"{name}.bits", np.frombuffer(pack_signs(weight), dtype=np.uint8))
            values = unpack_signs(b, packed, weight.numel(), list(weight.shape), name)
            return self.scaled(name, module, values, binary_scale(weight).numpy(), "alpha")
        codes, scale = weight_codes(weight, bits)  # the codes the layer computes with (quantizing is idempotent)
        stored = codes.numpy() if bits == 8 else np.frombuffer(pack_codes(codes, bits), dtype=np.uint8)
        packed = b.initializer(f"{name}.codes", stored)
        values = unpack_codes(b, packed, weight.numel(), bits, list(weight.shape), name)
        return self.scaled(name, module, values, scale.float().numpy(), "scale")

    def scaled(self, name: str, module: nn.Module, values: str, scale: np.ndarray, label: str) -> str:
        """``values`` times the per-output-channel ``scale``; or, for a layer without bias whose next layer
        absorbs a positive per-channel factor, ``values`` alone with ``scale`` left to it."""
        following = layer_type_of(self.following) if self.following is not None else None
        absorbs = following is not None and following.absorbs_input_scale
        if getattr(module, "bias", None) is None and absorbs and bool((scale > 0).all()):
            self.input_scale = scale.astype(np.float64)
            return values
        rank = cast(torch.Tensor, module.weight).dim()
        factor = self.builder.initializer(f"{name}.{label}", scale.reshape(-1, *[1] * (rank - 1)))
        return self.builder.node("Mul", [values, factor], f"{name}.scaled")

    def take_input_scale(self) -> np.ndarray | None:
        scale, self.input_scale = self.input_scale, None
        return scale

    def split_steps(self, x: str, hint: str) -> list[str]:
        if self.steps == 1:
            return [x]
        if self.flow.folded:
            return self.builder.node_multi("Split", [x], hint, self.steps, axis=0, num_outputs=self.steps)
        return [x] * self.steps

    def join_steps(self, steps: Sequence[str], hint: str) -> str:
        return steps[0] if len(steps) == 1 else self.builder.node("Concat", list(steps), hint, axis=0)

    def finish(self) -> None:
        """``logits``: the mean over the ``T`` steps, as ``SpikingNet.forward`` takes it."""
        b, flow = self.builder, self.flow
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
        model: the network; binarized and k-bit layers are found with :func:`~albsnn_compress.precision.weight_bits`.
        weights: ``"packed"`` (1 bit per binarized weight) or ``"float"`` (float32 everywhere).
        opset: ``ai.onnx`` opset, at least 18; the IR version is the lowest that opset allows.

    Returns:
        A self-contained ``onnx.ModelProto`` (no external data) with input ``images``
        ``[batch, C, H, W]`` (a flat spec: ``[batch, F]``; flatten images row-major before feeding them)
        and output ``logits`` ``[batch, num_classes]``.

    Raises:
        ExportError: an unknown weights mode or opset, or a layer ONNX cannot express.
    """
    _check_request(model, weights, opset)
    exporter = _Exporter(model, packed=weights == "packed")
    with torch.no_grad():
        exporter.run()
    graph = exporter.builder.graph(
        model.spec["name"],
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *model.spec["input"]["shape"]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", model.spec["num_classes"]])],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph, opset_imports=opsets, producer_name="albsnn-compress", producer_version=__version__
    )
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
        raise ExportError(
            f"{path}: the ONNX model is too large for one protobuf file ({exc}); use weights='packed'"
        ) from exc
    with atomic_write(path) as stream:
        stream.write(data)
