"""NIR export: a :class:`SpikingNet` as a NIR graph (HDF5), read by snnTorch, SpikingJelly and NIR's hardware flows.

The graph is a chain, one node per layer, named after the layer::

    input -> [input_norm] -> conv1 -> lif1 -> ... -> conv5 -> gap1 -> gap1_flatten -> output

* ``input``: ``[C, H, W]``, or ``[F]`` for a flat spec (an MLP: no flatten node, as snnTorch's and
  NIR's own fully connected graphs have it).
* ``input_norm``: the network's ``(x - mean) / std`` as a 1x1 ``Conv2d`` (weight ``1/std`` on
  the diagonal, bias ``-mean/std``; a flat input: an ``F x F`` diagonal ``Affine``), left out when
  mean is 0 and std is 1. So the graph, like the ONNX file, takes images scaled to ``[0, 1]``.
* ``conv`` -> ``Conv2d`` (2-element stride, padding and dilation; a zero bias if it has none),
  ``linear`` -> ``Affine`` (``Linear`` without bias). A batch norm is folded into the conv or
  linear right before it (:func:`fold_batch_norm`; NIR has no batch norm).
* ``lif`` -> ``LIF`` or ``IF`` with the ``dt`` convention of :mod:`.nir_mapping`.
* ``avgpool`` -> ``AvgPool2d`` (2-element kernel, stride and padding: what snnTorch's importer
  needs); ``gap`` -> ``AvgPool2d`` over the whole map + ``Flatten``; ``flatten`` -> ``Flatten``.
* Anything else (``maxpool``, a grouped conv, a batch norm after something that is not a
  conv/linear, a registered layer type NIR has no node for) is refused before any work, naming
  the layer.

The output node carries the last layer's value at every step; the network's logits are its mean
over the ``T`` steps (graph metadata ``albsnn_readout``). Every node's metadata names its layer
(``albsnn_layer``); a conv/linear whose weights are binary up to a per-channel scale says so
(``albsnn_binary`` = 1, ``albsnn_scale`` = the scale ``s``: every weight of output channel ``c``
is ``+s[c]`` or ``-s[c]``, exactly); one at 2, 4 or 8 bits (:mod:`albsnn_compress.precision`) says
``albsnn_bits`` = k and ``albsnn_scale`` = ``s``: every weight of output channel ``c`` is ``q * s[c]``
for an integer ``q`` in ``[-Q, Q]``, ``Q = 2^(k-1) - 1``, to float32 rounding
(:data:`~albsnn_compress.formats.nir.mapping.KBIT_TOLERANCE`; folding a batch norm rounds once more).
NIR stores float arrays: the 1-bit and k-bit structure is recorded, not packed (the ``.albsnn`` container packs it).
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binary_scale, is_binarized
from albsnn_compress.errors import ExportError, one_line
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.formats.nir.mapping import DT, check_neuron, neuron_node
from albsnn_compress.precision import FLOAT_BITS, layer_bits, precision
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet, layer_shapes
from albsnn_compress.versions import __version__

__all__ = [
    "NirExport",
    "NIR_FORMAT",
    "export_nir",
    "build_nir_graph",
    "fold_batch_norm",
    "check_exportable",
    "RESERVED_NAMES",
    "MAX_NORMALIZED_FEATURES",
]

NIR_FORMAT = "albsnn-compress NIR 1"
"""Graph metadata ``albsnn_format``: what the reader checks to trust our per-node metadata."""

RESERVED_NAMES = ("input", "input_norm", "output")

_FOLDS_INTO = ("conv", "linear")
_HINTS = {
    "maxpool": "NIR has no max pooling node; use avgpool in the spec (or export ONNX or C)",
    "bn": "NIR has no batch norm; put it right after a conv or linear layer so it folds into that layer",
}


@dataclass(frozen=True)
class NirExport:
    """What :func:`export_nir` wrote.

    Attributes:
        path: the file.
        file_bytes: its size on disk.
        dt: seconds per time step the neuron parameters are written for.
        timesteps: the model's ``T`` (the readout averages the output over ``T`` steps).
        nodes: the graph's node names in chain order.
        binary_layers: layers whose NIR weights are ``scale[c] * (+-1)``, exactly.
        quantized_layers: layers at 2-8 bits, with their bits: NIR weights ``scale[c] * q`` (module docs).
        folded_batch_norms: batch norm folded into each conv/linear (layer -> batch norm).
    """

    path: Path
    file_bytes: int
    dt: float
    timesteps: int
    nodes: tuple[str, ...]
    binary_layers: tuple[str, ...]
    folded_batch_norms: dict[str, str] = field(default_factory=dict)
    quantized_layers: dict[str, int] = field(default_factory=dict)


def _f64(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().to(torch.float64)


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    """A tensor attribute of a layer (``weight``, a parametrization's ``original``), typed as one."""
    value = getattr(module, name)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.{name} is a {type(value).__name__}, not a tensor")
    return value


def _bias(module: nn.Module) -> torch.Tensor | None:
    return None if getattr(module, "bias", None) is None else _tensor(module, "bias")


def _latent(module: nn.Module) -> torch.Tensor:
    """The real weights a binarized layer keeps (its ``weight`` computes their signs); else its weight."""
    if is_binarized(module):
        parametrizations = module.get_submodule("parametrizations.weight")
        return _tensor(parametrizations, "original")
    return _tensor(module, "weight")


def _fold(
    name: str, module: nn.Module, bn: nn.modules.batchnorm._BatchNorm | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight, bias)`` of ``module`` with ``bn`` folded in, float64 arithmetic rounded once to float32.

    ``BN(W x + b) = (s W) x + (b - mean) s + beta`` with ``s = gamma / sqrt(var + eps)``. A binarized
    weight ``alpha * sign`` becomes ``f32(alpha * s) * sign``: still one scale per output channel.
    """
    weight = _tensor(module, "weight").detach().cpu()
    bias = _bias(module)
    bias = None if bias is None else bias.detach().cpu()
    if bn is None:
        return weight.float().clone(), None if bias is None else bias.float().clone()
    if bn.running_mean is None or bn.running_var is None or bn.weight is None or bn.bias is None:
        raise ExportError(
            f"layer {name}: the batch norm after it has no running statistics or affine parameters to fold"
        )
    scale = _f64(bn.weight) / torch.sqrt(_f64(bn.running_var) + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    if is_binarized(module):
        latent = _latent(module).detach().cpu()
        channel = (_f64(binary_scale(latent)) * scale).float()
        folded = channel.view(shape) * torch.where(latent >= 0, 1.0, -1.0).float()  # sign(0) = +1, as binarize
    else:
        folded = (_f64(weight) * scale.view(shape)).float()
    base = torch.zeros_like(scale) if bias is None else _f64(bias)
    folded_bias = ((base - _f64(bn.running_mean)) * scale + _f64(bn.bias)).float()
    return folded + 0.0, folded_bias  # + 0.0 turns -0.0 into +0.0


def _kind(module: nn.Module) -> str:
    """The layer type a module is registered as (its class name if none)."""
    record = layer_type_of(module)
    return record.name if record is not None else type(module).__name__


def check_exportable(model: SpikingNet) -> None:
    """Refuse, before any work, a layer NIR cannot hold (naming it); binarizing layers changes nothing here.

    Raises:
        ExportError: see the module docs.
    """
    _check_normalization(model.spec)
    layers = model.spec["layers"]
    for index, (layer, module) in enumerate(zip(layers, model.layers)):
        kind = _kind(module)
        name = layer["name"]
        if name in RESERVED_NAMES:
            raise ExportError(
                f"layer {name}: the name is reserved for a NIR graph node ({list(RESERVED_NAMES)}); rename the layer"
            )
        if kind == "bn":
            if index == 0 or layers[index - 1]["type"] not in _FOLDS_INTO:
                raise ExportError(f"layer {name} (bn): {_HINTS['bn']}")
            continue
        if kind not in _NODE_WRITERS:
            hint = _HINTS.get(
                kind, f"NIR export supports {sorted(_NODE_WRITERS)} and bn (folded into the conv or linear before it)"
            )
            raise ExportError(f"layer {name} ({kind}): no NIR node for this layer; {hint}")
        if kind == "conv" and (isinstance(module.padding, str) or module.padding_mode != "zeros"):
            raise ExportError(
                f"layer {name}: padding {module.padding!r} with mode {module.padding_mode!r} has no NIR form; "
                "use integer zero padding"
            )
        if kind == "conv" and module.groups != 1:
            raise ExportError(
                f"layer {name}: groups={module.groups}: NIR's Conv2d takes weight.shape[1] as its input channels "
                "(nir 1.0.8), so a grouped conv fails NIR's own type check, and SpikingJelly's importer refuses "
                "groups; use groups=1 to export NIR"
            )
        if isinstance(module, LIF):
            check_neuron(name, module)


def fold_batch_norm(model: SpikingNet) -> tuple[SpikingNet, dict[str, str]]:
    """A copy of ``model`` with every batch norm folded into the conv or linear before it.

    The copy is the network the NIR file describes, tensor for tensor: its convs and linears
    carry the folded weights and biases (float64 arithmetic, rounded once), a binarized layer
    stays binarized (its folded weights are ``scale * sign`` with the same signs).

    Returns:
        ``(folded model, {layer: batch norm folded into it})``.

    Raises:
        ExportError: a layer NIR cannot hold, named (see the module docs).
    """
    check_exportable(model)
    spec = copy.deepcopy(model.spec)
    modules = dict(zip((layer["name"] for layer in spec["layers"]), model.layers))
    kept, folded, tensors = [], {}, {}
    for index, layer in enumerate(spec["layers"]):
        if layer["type"] == "bn":
            continue
        name = layer["name"]
        module = modules[name]
        if layer["type"] in _FOLDS_INTO:
            following = spec["layers"][index + 1] if index + 1 < len(spec["layers"]) else None
            bn_name = following["name"] if following is not None and following["type"] == "bn" else None
            bn = modules[bn_name] if bn_name is not None else None
            if bn is not None and not isinstance(bn, nn.modules.batchnorm._BatchNorm):
                raise TypeError(f"layer {bn_name}: a bn layer that is no batch norm ({type(bn).__name__})")
            weight, bias = _fold(name, module, bn)
            if bn_name is not None:
                folded[name] = bn_name
            layer["bias"] = bias is not None
            tensors[name] = {"weight": weight, **({"bias": bias} if bias is not None else {})}
        elif layer["type"] == "lif":
            tensors[name] = {key: getattr(module, key).detach().cpu().clone() for key in module.per_channel}
        kept.append(layer)
    spec["layers"] = kept
    result = SpikingNet(spec, model.timesteps)
    with torch.no_grad():
        for name, values in tensors.items():
            target = result.layers.get_submodule(name)
            for key, value in values.items():
                getattr(target, key).copy_(value)
    binary = [
        f"layers.{name}"
        for name, module in modules.items()
        if layer_type_of(module) is not None and is_binarized(module)
    ]
    binarize_(result, binary)
    return result.eval(), folded


# -- one entry per layer type: (name, module, layer, input shape, output shape, dt) -> [(node name, node)]

Nodes = list[tuple[str, nir.NIRNode]]


def _pair(value: int | tuple[int, ...]) -> np.ndarray:
    return np.array([value, value] if isinstance(value, int) else list(value), dtype=np.int64)


def _weight_metadata(name: str, module: nn.Module, folded: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"albsnn_layer": name, "albsnn_bias": int(module.bias is not None)}
    if name in folded:
        metadata["albsnn_batch_norm"] = folded[name]
    if is_binarized(module):
        metadata["albsnn_binary"] = 1
        metadata["albsnn_scale"] = binary_scale(_tensor(module, "weight")).detach().cpu().float().numpy()
    return metadata


def _conv_node(
    name: str,
    module: nn.Conv2d,
    _layer: dict[str, Any],
    shape: tuple[int, ...],
    _out: tuple[int, ...],
    folded: dict[str, str],
    _dt: float,
) -> Nodes:
    if isinstance(module.padding, str):  # check_exportable refuses it first
        raise ExportError(f"layer {name}: padding {module.padding!r} has no NIR form; use integer zero padding")
    weight = module.weight.detach().cpu().float().numpy()
    bias = np.zeros(weight.shape[0], np.float32) if module.bias is None else module.bias.detach().cpu().float().numpy()
    return [
        (
            name,
            nir.Conv2d(
                input_shape=tuple(shape[1:]),
                weight=weight,
                stride=_pair(module.stride),
                padding=_pair(module.padding),
                dilation=_pair(module.dilation),
                groups=int(module.groups),
                bias=bias,
                metadata=_weight_metadata(name, module, folded),
            ),
        )
    ]


def _linear_node(
    name: str,
    module: nn.Linear,
    _layer: dict[str, Any],
    _shape: tuple[int, ...],
    _out: tuple[int, ...],
    folded: dict[str, str],
    _dt: float,
) -> Nodes:
    weight = module.weight.detach().cpu().float().numpy()
    metadata = _weight_metadata(name, module, folded)
    bias = _bias(module)
    if bias is None:
        return [(name, nir.Linear(weight=weight, metadata=metadata))]
    return [(name, nir.Affine(weight=weight, bias=bias.detach().cpu().float().numpy(), metadata=metadata))]


def _lif_node(
    name: str,
    module: LIF,
    layer: dict[str, Any],
    shape: tuple[int, ...],
    _out: tuple[int, ...],
    _folded: dict[str, str],
    dt: float,
) -> Nodes:
    node = neuron_node(name, module, tuple(shape), dt)
    node.metadata["albsnn_overrides"] = json.dumps(layer["neuron"], sort_keys=True)  # the spec layer's own settings
    return [(name, node)]


def _avgpool_node(
    name: str,
    module: nn.AvgPool2d,
    layer: dict[str, Any],
    _shape: tuple[int, ...],
    _out: tuple[int, ...],
    _folded: dict[str, str],
    _dt: float,
) -> Nodes:
    if module.ceil_mode or module.divisor_override is not None or any(_pair(module.padding)):
        raise ExportError(
            f"layer {name}: average pooling with ceil_mode, padding or divisor_override has no NIR form here"
        )
    return [
        (
            name,
            nir.AvgPool2d(
                kernel_size=_pair(module.kernel_size),
                stride=_pair(module.stride),
                padding=np.zeros(2, np.int64),
                metadata={
                    "albsnn_layer": name,
                    "albsnn_stride": 0 if layer["stride"] is None else int(layer["stride"]),
                },
            ),
        )
    ]


def _gap_nodes(
    name: str,
    _module: nn.Module,
    _layer: dict[str, Any],
    shape: tuple[int, ...],
    _out: tuple[int, ...],
    _folded: dict[str, str],
    _dt: float,
) -> Nodes:
    window = np.array(shape[1:], dtype=np.int64)
    meta = {"albsnn_layer": name, "albsnn_role": "gap"}
    return [
        (
            name,
            nir.AvgPool2d(kernel_size=window, stride=window.copy(), padding=np.zeros(2, np.int64), metadata=dict(meta)),
        ),
        (
            f"{name}_flatten",
            nir.Flatten(input_type=np.array([shape[0], 1, 1]), start_dim=0, end_dim=-1, metadata=dict(meta)),
        ),
    ]


def _flatten_node(
    name: str,
    _module: nn.Module,
    _layer: dict[str, Any],
    shape: tuple[int, ...],
    _out: tuple[int, ...],
    _folded: dict[str, str],
    _dt: float,
) -> Nodes:
    return [(name, nir.Flatten(input_type=np.array(shape), start_dim=0, end_dim=-1, metadata={"albsnn_layer": name}))]


_NODE_WRITERS: dict[str, Callable[..., Nodes]] = {
    "conv": _conv_node,
    "linear": _linear_node,
    "lif": _lif_node,
    "avgpool": _avgpool_node,
    "gap": _gap_nodes,
    "flatten": _flatten_node,
}


MAX_NORMALIZED_FEATURES = 4096
"""Features of a flat input whose normalization the writer holds as an ``F x F`` diagonal ``Affine`` (64 MiB of
float32 at most; mostly zeros, which gzip stores in little)."""


def _normalization_node(spec: dict[str, Any]) -> Nodes:
    """``input_norm``: ``(x - mean) / std`` as a 1x1 ``Conv2d`` (images) or a diagonal ``Affine`` (flat input)."""
    mean = np.asarray(spec["input"]["mean"], dtype=np.float64)
    std = np.asarray(spec["input"]["std"], dtype=np.float64)
    if (mean == 0).all() and (std == 1).all():
        return []
    metadata = {"albsnn_role": "input_normalization", "albsnn_mean": mean, "albsnn_std": std}
    shape = spec["input"]["shape"]
    if len(shape) == 1:
        return [("input_norm", _flat_normalization(shape[0], mean, std, metadata))]
    channels, height, width = shape
    weight = np.zeros((channels, channels, 1, 1), np.float32)
    weight[np.arange(channels), np.arange(channels), 0, 0] = (1.0 / std).astype(np.float32)
    return [
        (
            "input_norm",
            nir.Conv2d(
                input_shape=(height, width),
                weight=weight,
                stride=_pair(1),
                padding=_pair(0),
                dilation=_pair(1),
                groups=1,
                bias=(-mean / std).astype(np.float32),
                metadata=metadata,
            ),
        )
    ]


def _check_normalization(spec: dict[str, Any]) -> None:
    """Refuse a flat input normalization too wide for the diagonal ``Affine`` that holds it."""
    shape = spec["input"]["shape"]
    trivial = all(value == 0 for value in spec["input"]["mean"]) and all(value == 1 for value in spec["input"]["std"])
    features = shape[0]
    if len(shape) != 1 or trivial:
        return
    if features > MAX_NORMALIZED_FEATURES:
        raise ExportError(
            f"the input normalization of {features} features would be a {features} x {features} NIR Affine (NIR "
            f"has no per-feature scale-and-shift node that snnTorch and SpikingJelly read); at most "
            f"{MAX_NORMALIZED_FEATURES} features are written this way: normalize outside the network (mean 0, "
            "std 1 in the spec), or export ONNX or C"
        )


def _flat_normalization(features: int, mean: np.ndarray, std: np.ndarray, metadata: dict[str, Any]) -> nir.Affine:
    """A flat input's ``(x - mean) / std`` (one value for all features, or one per feature) as a diagonal ``Affine``:
    weight ``1/std`` on the diagonal, bias ``-mean/std`` (float64, rounded once, as the 1x1 conv of images)."""
    weight = np.zeros((features, features), np.float32)
    weight[np.arange(features), np.arange(features)] = np.broadcast_to(1.0 / std, (features,)).astype(np.float32)
    bias = np.broadcast_to(-mean / std, (features,)).astype(np.float32)
    return nir.Affine(weight=weight, bias=bias, metadata=metadata)


def build_nir_graph(model: SpikingNet, dt: float = DT) -> tuple[nir.NIRGraph, NirExport]:
    """The NIR graph of ``model`` (see the module docs), and what an export of it records (``path`` empty).

    Raises:
        ExportError: a layer NIR cannot hold, named; or a graph NIR's own type check rejects.
    """
    if type(dt) not in (int, float) or not (dt > 0 and np.isfinite(dt)):
        raise ExportError(f"dt must be a positive number of seconds, got {dt!r}")
    dt = float(dt)
    folded_model, folded = fold_batch_norm(model)
    spec = folded_model.spec
    nodes: Nodes = [("input", nir.Input(input_type=np.array(spec["input"]["shape"])))]
    nodes += _normalization_node(spec)
    for layer, module, (shape, out) in zip(spec["layers"], folded_model.layers, layer_shapes(spec)):
        nodes += _NODE_WRITERS[_kind(module)](layer["name"], module, layer, shape, out, folded, dt)
    nodes.append(("output", nir.Output(output_type=np.array([spec["num_classes"]]))))
    quantized = _record_quantized(model, dict(nodes))
    binary = tuple(name for name, node in nodes if node.metadata.get("albsnn_binary") == 1)
    metadata = {
        "albsnn_format": NIR_FORMAT,
        "albsnn_version": __version__,
        "albsnn_model": str(spec["name"]),
        "albsnn_timesteps": int(model.timesteps),
        "albsnn_neuron": json.dumps(spec["neuron"], sort_keys=True),
        "albsnn_dt": float(dt),
        "albsnn_readout": "mean over the time steps of the output node",
        "albsnn_binary_layers": ",".join(binary),
    }
    if quantized:  # only then: a float or binary model's file stays what it was before k-bit layers existed
        metadata["albsnn_quantized_layers"] = ",".join(f"{name}:{bits}" for name, bits in quantized.items())
    names = [name for name, _ in nodes]
    try:
        graph = nir.NIRGraph(nodes=dict(nodes), edges=list(zip(names, names[1:])), metadata=metadata, type_check=True)
    except (ValueError, AssertionError, TypeError) as exc:  # what NIR's type check raises for a graph it rejects
        raise ExportError(f"NIR's type check rejects the graph: {one_line(exc)}") from exc
    info = NirExport(Path(), 0, float(dt), int(model.timesteps), tuple(names), binary, folded, quantized)
    return graph, info


def _record_quantized(model: SpikingNet, nodes: dict[str, Any]) -> dict[str, int]:
    """Mark each 2-8-bit layer's node with ``albsnn_bits`` and ``albsnn_scale`` (module docs); their bits by name.

    The scale is the written weights' own: a channel's largest ``|w|`` over ``Q`` (the quantizer always
    uses the code ``+-Q`` in a channel that is not all zero), so a batch norm folded in is part of it.
    """
    quantized = {}
    for name, bits in layer_bits(model).items():
        if not 1 < bits < FLOAT_BITS:
            continue
        short = name.removeprefix("layers.")
        node = nodes[short]
        rows = np.abs(np.asarray(node.weight, dtype=np.float64).reshape(node.weight.shape[0], -1))
        node.metadata["albsnn_bits"] = bits
        node.metadata["albsnn_scale"] = (rows.max(axis=1) / precision(bits).max_code).astype(np.float32)
        quantized[short] = bits
    return quantized


def export_nir(model: SpikingNet, path: str | os.PathLike[str], *, dt: float = DT) -> NirExport:
    """Write ``model`` as a NIR graph (HDF5), atomically; it reads back with ``nir.read`` and passes NIR's type checks.

    Args:
        model: the network (batch norms are folded; see :func:`fold_batch_norm`).
        path: the ``.nir`` file to write.
        dt: seconds per time step for the neuron parameters (snnTorch and SpikingJelly read 1e-4).

    Returns:
        :class:`NirExport`: the size, node names and which layers are binary up to a per-channel scale.

    Raises:
        ExportError: naming a layer NIR cannot hold, or when the written file does not read back.

    Example:
        >>> info = export_nir(model, "model.nir")  # doctest: +SKIP
        >>> info.binary_layers                     # doctest: +SKIP
        ('conv2', 'conv3', 'conv4')
    """
    graph, info = build_nir_graph(model, dt)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    target = Path(path)
    with atomic_write(target) as stream:
        stream.write(buffer.getvalue())
    try:
        nir.read(target)
    except Exception as exc:  # noqa: BLE001 - any failure of this foreign call to read back is an export failure
        raise ExportError(f"{target}: the written NIR file does not read back with nir.read: {one_line(exc)}") from exc
    return NirExport(
        target,
        target.stat().st_size,
        info.dt,
        info.timesteps,
        info.nodes,
        info.binary_layers,
        info.folded_batch_norms,
        info.quantized_layers,
    )
