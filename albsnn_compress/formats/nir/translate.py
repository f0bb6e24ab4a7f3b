"""A chain of NIR nodes as our spec's layers and their tensors, the per-sample shape tracked node by node.

=================  ======================================================================
NIR node           our layer
=================  ======================================================================
``Conv2d``         ``conv`` (square kernel, equal strides and padding, dilation 1; a zero bias is dropped)
``Affine``         ``linear`` with bias (``Linear``: without)
``AvgPool2d``      ``avgpool`` (square, no padding); our writer's ``gap`` (+ its ``Flatten``): ``gap``
``SumPool2d``      ``avgpool``, its ``k*k`` folded into the next conv/linear (or the one before, if a neuron follows)
``Flatten``        ``flatten`` (everything but the batch, NIR's ``start_dim=0``)
``LIF``, ``IF``    ``lif`` with the ``dt`` convention of :mod:`.mapping`
``CubaLIF``        ``lif`` when ``tau_syn = dt`` (the current lasts one step); refused otherwise
=================  ======================================================================

A node whose parameters have no exact form in our layers is refused in one line naming the file,
the node and the parameter. Our own files' node metadata (trusted when
:attr:`~.options.ReadOptions.ours`) gives back the layer names, the binarized layers (weights
``scale[c] * (+-1)``, checked), the per-layer neuron overrides and per-channel settings, and the
exact ``tau``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from albsnn_compress.errors import NirError
from albsnn_compress.files.model_cost import MAX_ACTIVATION
from albsnn_compress.formats.nir.chain import Chain
from albsnn_compress.formats.nir.graph_file import checked_name
from albsnn_compress.formats.nir.mapping import KBIT_TOLERANCE, neuron_settings
from albsnn_compress.formats.nir.options import ReadOptions, parse_neuron
from albsnn_compress.formats.nir.params import (
    bias_vector,
    finite_floats,
    int_pair,
    integer,
    integers,
    metadata_flag,
    metadata_of,
    node_where,
    square,
    weight_array,
)
from albsnn_compress.limits import MAX_NAME_CHARS, check_text
from albsnn_compress.precision import FLOAT_BITS, PRECISIONS, precision

__all__ = ["Translation", "translate_chain"]


@dataclass(frozen=True)
class Translation:
    """The chain as spec layers.

    Attributes:
        layers: the spec's layer list (``name`` set where our writer recorded it).
        tensors: per layer, the tensors to load into its module (``weight``, ``bias``, per-channel buffers).
        binary: indices of the layers to binarize again (our writer recorded them binary).
        shape: the per-sample shape the chain computes (``[num_classes]`` at the end).
    """

    layers: list[dict[str, Any]]
    tensors: list[dict[str, np.ndarray]]
    binary: list[int]
    shape: tuple[int, ...]


class _Translator:
    """The state of one pass over the chain: the layers so far and what the next node must fit."""

    def __init__(self, options: ReadOptions) -> None:
        self.options = options
        self.layers: list[dict[str, Any]] = []
        self.tensors: list[dict[str, np.ndarray]] = []
        self.binary: list[int] = []
        self.shape: tuple[int, ...] = options.input_shape
        self.scale = 1.0  # a SumPool2d's k*k waiting to be folded into a weight layer
        self.scale_node = ""
        self.gap = False  # a gap layer was read; its Flatten follows

    def where(self, name: str, node: Any) -> str:
        return node_where(self.options.path, name, node)

    def meta(self, node: Any) -> Mapping[str, Any]:
        return metadata_of(node, self.options.ours)

    def flag(self, node: Any, key: str) -> int | str | None:
        return metadata_flag(self.meta(node), key)

    def produce(self, where: str, shape: tuple[int, ...]) -> None:
        """The next node's input shape; refused beyond the size a layer's output may have."""
        if math.prod(shape) > MAX_ACTIVATION:
            raise NirError(
                f"{where}: its output {list(shape)} holds {math.prod(shape)} values per sample, "
                f"more than the {MAX_ACTIVATION} a layer may have"
            )
        self.shape = shape

    def add(self, where: str, node: Any, layer: dict[str, Any], tensors: dict[str, np.ndarray] | None = None) -> None:
        """The next layer, named as our writer recorded it (``albsnn_layer``: a name that is a Python identifier)."""
        meta = self.meta(node)
        if "albsnn_layer" in meta:
            label = checked_name(meta["albsnn_layer"], f"{where}: metadata albsnn_layer")
            if not label.isidentifier():
                raise NirError(f"{where}: metadata albsnn_layer {label!r} is not a layer name (a Python identifier)")
            layer["name"] = label
        self.layers.append(layer)
        self.tensors.append(tensors or {})


def translate_chain(chain: Chain, options: ReadOptions) -> Translation:
    """The spec layers of the nodes between Input and Output (the normalization node of ``options`` skipped).

    Raises:
        NirError: naming the node that has no exact layer here, or an Output that disagrees with the chain.
    """
    translator = _Translator(options)
    for name, node in chain[1:-1]:
        if name != options.normalization_node:
            _READERS[type(node)](translator, name, node)
    _output(translator, *chain[-1])
    return Translation(translator.layers, translator.tensors, translator.binary, translator.shape)


def _output(translator: _Translator, name: str, node: Any) -> None:
    """The chain must end with a flat vector, of the size the Output node declares (if it declares one)."""
    where = translator.where(name, node)
    if translator.scale != 1.0:
        _fold_scale_backward(translator, name, node)
    if len(translator.shape) != 1:
        raise NirError(
            f"{where}: the network ends with a {list(translator.shape)} map; end with a Flatten or a global pooling"
        )
    types = node.output_type if isinstance(node.output_type, Mapping) else {}
    if types.get("output") is None:
        return
    declared = integers(types["output"], where, "output shape")
    if declared.size and math.prod(int(size) for size in declared) != translator.shape[0]:
        raise NirError(f"{where}: declares shape {declared.tolist()}, the chain computes {list(translator.shape)}")


# -- weight layers ---------------------------------------------------------------------------------------------


def _conv(translator: _Translator, name: str, node: Any) -> None:
    where, shape = translator.where(name, node), translator.shape
    if len(shape) != 3:
        raise NirError(f"{where}: needs a [C, H, W] input, gets {list(shape)}")
    weight = weight_array(node.weight, where, "weight", 4)
    kernel = square(weight.shape[2:], where, "kernel")
    stride = square(int_pair(node.stride, where, "stride"), where, "stride")
    if kernel < 1 or stride < 1:
        raise NirError(f"{where}: kernel {kernel} and stride {stride} must be at least 1")
    padding = _padding(node.padding, where, kernel, stride)
    if int_pair(node.dilation, where, "dilation") != (1, 1):
        raise NirError(f"{where}: dilation other than 1 is not supported")
    groups = integer(node.groups, where, "groups")
    if groups < 1 or weight.shape[1] * groups != shape[0] or weight.shape[0] % groups:
        raise NirError(
            f"{where}: weight {list(weight.shape)} with groups={groups} does not fit {shape[0]} input channels"
        )
    height, width = ((size + 2 * padding - kernel) // stride + 1 for size in shape[1:])
    if height < 1 or width < 1:
        raise NirError(f"{where}: kernel {kernel} does not fit the {list(shape)} input")
    layer = {
        "type": "conv",
        "out_channels": weight.shape[0],
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "groups": groups,
    }
    _weights(translator, name, node, layer, weight, bias_vector(node.bias, weight.shape[0], where))
    translator.produce(where, (weight.shape[0], height, width))


def _padding(value: Any, where: str, kernel: int, stride: int) -> int:
    """A Conv2d's padding: one square integer, or ``'valid'``/``'same'`` where that is a symmetric integer."""
    if not isinstance(value, (str, bytes)):
        return square(int_pair(value, where, "padding"), where, "padding")
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if text == "valid":
        return 0
    if text == "same" and stride == 1 and kernel % 2 == 1:
        return kernel // 2
    raise NirError(f"{where}: padding {text!r} with kernel {kernel} and stride {stride} has no symmetric integer form")


def _dense(translator: _Translator, name: str, node: Any) -> None:
    where = translator.where(name, node)
    weight = weight_array(node.weight, where, "weight", 2)
    if translator.shape != (weight.shape[1],):
        raise NirError(
            f"{where}: weight {list(weight.shape)} needs a flat [{weight.shape[1]}] input, "
            f"gets {list(translator.shape)}"
        )
    bias = bias_vector(node.bias, weight.shape[0], where) if isinstance(node, nir.Affine) else None
    _weights(translator, name, node, {"type": "linear", "out_features": weight.shape[0]}, weight, bias)
    translator.produce(where, (weight.shape[0],))


def _weights(
    translator: _Translator, name: str, node: Any, layer: dict[str, Any], weight: np.ndarray, bias: np.ndarray | None
) -> None:
    """Add a conv/linear layer: a pending sum pooling's ``k*k`` folded in, a zero bias dropped, binary checked."""
    if translator.scale != 1.0:  # a SumPool2d before: sum = k*k * average
        weight = weight * np.float32(translator.scale)
        translator.scale = 1.0
    if bias is not None and not bias.any() and translator.flag(node, "albsnn_bias") != 1:
        bias = (
            None  # a zero bias adds nothing (NIR's Conv2d always has one): dropped, unless our writer says it had one
        )
    layer["bias"] = bias is not None
    if translator.flag(node, "albsnn_binary") == 1:
        _check_binary(translator.where(name, node), weight, translator.meta(node).get("albsnn_scale"))
        translator.binary.append(len(translator.layers))
    elif (bits := translator.flag(node, "albsnn_bits")) is not None:
        _check_quantized(translator.where(name, node), weight, bits, translator.meta(node).get("albsnn_scale"))
    where = translator.where(name, node)
    translator.add(where, node, layer, {"weight": weight, **({"bias": bias} if bias is not None else {})})


def _check_binary(where: str, weight: np.ndarray, recorded: Any) -> None:
    """Our writer's ``albsnn_binary``: every weight of output channel ``c`` is ``+-scale[c]``, exactly."""
    scale = finite_floats(recorded, where, "metadata albsnn_scale").astype(np.float32).reshape(-1)
    rows = np.abs(weight.reshape(weight.shape[0], -1))
    if scale.shape != (weight.shape[0],) or (scale < 0).any() or not (rows == scale[:, None]).all():
        raise NirError(f"{where}: metadata albsnn_binary says the weights are scale[c] * (+-1), but they are not")


def _check_quantized(where: str, weight: np.ndarray, bits: int | str, recorded: Any) -> None:
    """Our writer's ``albsnn_bits``: every weight of output channel ``c`` is ``q * scale[c]`` with an integer
    ``q`` in ``[-Q, Q]``, to float32 rounding (:data:`~albsnn_compress.formats.nir.mapping.KBIT_TOLERANCE`).

    The layer is read as float (its values, exactly as written); the check refuses a file whose
    recorded structure is false, so a tool trusting it cannot be misled.
    """
    if not (isinstance(bits, int) and 1 < bits < FLOAT_BITS and str(bits) in PRECISIONS):
        raise NirError(f"{where}: metadata albsnn_bits is {bits!r}; our writer records 2, 4 or 8")
    scale = finite_floats(recorded, where, "metadata albsnn_scale").astype(np.float64).reshape(-1)
    rows = weight.reshape(weight.shape[0], -1).astype(np.float64)
    if scale.shape != (weight.shape[0],) or (scale < 0).any():
        raise NirError(f"{where}: metadata albsnn_scale must hold one value >= 0 per output channel")
    step = np.where(scale > 0, scale, 1.0)[:, None]
    codes = np.rint(rows / step)
    nearest = codes * scale[:, None]
    limit = precision(bits).max_code
    if (np.abs(codes) > limit).any() or (np.abs(rows - nearest) > KBIT_TOLERANCE * np.abs(nearest)).any():
        raise NirError(
            f"{where}: metadata albsnn_bits says the weights are scale[c] * q with integer |q| <= {limit}, "
            "but they are not"
        )


# -- pooling and flattening ------------------------------------------------------------------------------------


def _pool(translator: _Translator, name: str, node: Any) -> None:
    where, shape = translator.where(name, node), translator.shape
    if len(shape) != 3:
        raise NirError(f"{where}: needs a [C, H, W] input, gets {list(shape)}")
    kernel = int_pair(node.kernel_size, where, "kernel_size")
    stride = int_pair(node.stride, where, "stride")
    if int_pair(node.padding, where, "padding") != (0, 0):
        raise NirError(f"{where}: padded pooling is not supported")
    if translator.flag(node, "albsnn_role") == "gap" and kernel == tuple(shape[1:]) == stride:
        translator.add(where, node, {"type": "gap"})
        translator.produce(where, shape[:1] + (1, 1))
        translator.gap = True
        return
    size, step = square(kernel, where, "kernel_size"), square(stride, where, "stride")
    if size < 1 or step < 1 or size > min(shape[1:]):
        raise NirError(f"{where}: kernel {size} with stride {step} does not fit the {list(shape)} input")
    default_stride = translator.flag(node, "albsnn_stride") == 0 and step == size
    translator.add(where, node, {"type": "avgpool", "kernel_size": size, "stride": None if default_stride else step})
    translator.produce(where, (shape[0], *((side - size) // step + 1 for side in shape[1:])))
    if isinstance(node, nir.SumPool2d):
        translator.scale *= float(size * size)
        translator.scale_node = name


def _flatten(translator: _Translator, name: str, node: Any) -> None:
    where, shape = translator.where(name, node), translator.shape
    rank = len(shape)
    start, end = integer(node.start_dim, where, "start_dim"), integer(node.end_dim, where, "end_dim")
    if start not in (0, -rank) or end not in (-1, rank - 1):
        raise NirError(
            f"{where}: start_dim={start}, end_dim={end} keeps some axes of the {list(shape)} input; "
            "only a full flatten (start_dim=0) is supported"
        )
    if translator.gap and translator.flag(node, "albsnn_role") == "gap":
        translator.produce(where, shape[:1])  # the gap layer already dropped H and W
        translator.gap = False
        return
    translator.add(where, node, {"type": "flatten"})
    translator.produce(where, (math.prod(shape),))


# -- neurons -----------------------------------------------------------------------------------------------------


def _neuron(translator: _Translator, name: str, node: Any) -> None:
    if translator.scale != 1.0:
        _fold_scale_backward(translator, name, node)
    options, where = translator.options, translator.where(name, node)
    settings, per_channel = neuron_settings(
        where, node, translator.shape, options.dt, options.strict_threshold, translator.meta(node) or None
    )
    if options.ours:
        settings, per_channel = _recorded(translator, where, node, settings, per_channel)
    channel_shape = (translator.shape[0], 1, 1) if len(translator.shape) == 3 else (translator.shape[0],)
    translator.add(
        where,
        node,
        {"type": "lif", "neuron": settings, "per_channel": sorted(per_channel)},
        {key: value.reshape(channel_shape).astype(np.float32) for key, value in per_channel.items()},
    )


def _recorded(
    translator: _Translator, where: str, node: Any, settings: dict[str, Any], per_channel: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The spec layer's own neuron settings and per-channel buffers as our writer recorded them, checked against
    what the node computes (a per-channel setting whose channels happen to be equal stays per channel)."""
    meta = translator.meta(node)
    overrides = parse_neuron(f"{where} metadata albsnn_overrides", meta.get("albsnn_overrides", "{}"), partial=True)
    per_channel_text = meta.get("albsnn_per_channel", "")
    if not isinstance(per_channel_text, str):
        raise NirError(f"{where}: metadata albsnn_per_channel must be a comma-separated list of settings")
    check_text(per_channel_text, f"{where}: metadata albsnn_per_channel", NirError, MAX_NAME_CHARS)
    recorded = [key for key in per_channel_text.split(",") if key]
    effective = {**translator.options.neuron, **overrides}
    for key, value in settings.items():
        if key not in recorded and effective.get(key) != value:
            raise NirError(f"{where}: the node computes {key}={value!r}, its metadata says {effective.get(key)!r}")
    stray = sorted(set(per_channel) - set(recorded))
    if stray:
        raise NirError(f"{where}: {stray} vary by channel, its metadata albsnn_per_channel says {recorded}")
    channels, buffers = translator.shape[0], {}
    for key in recorded:
        if key in per_channel:
            buffers[key] = per_channel[key]
        elif key in settings:
            buffers[key] = np.full(channels, settings[key])
        else:  # an IF neuron's unused per-channel tau: only the metadata has it
            buffers[key] = finite_floats(meta.get("albsnn_tau"), where, "metadata albsnn_tau").reshape(-1)
            if buffers[key].shape != (channels,):
                raise NirError(f"{where}: metadata albsnn_tau must hold {channels} values")
    return overrides, buffers


def _fold_scale_backward(translator: _Translator, name: str, node: Any) -> None:
    """A SumPool2d's ``k*k`` before a neuron goes into the conv/linear before the pooling (weights and bias)."""
    for index in range(len(translator.layers) - 1, -1, -1):
        kind = translator.layers[index]["type"]
        if kind in ("conv", "linear"):
            factor = np.float32(translator.scale)
            translator.tensors[index] = {key: value * factor for key, value in translator.tensors[index].items()}
            if index in translator.binary:
                translator.binary.remove(index)
            translator.scale = 1.0
            return
        if kind not in ("avgpool", "flatten"):
            break
    raise NirError(
        f"{translator.where(translator.scale_node, node)}: a sum pooling between neurons (before {name!r}) has no "
        "conv or linear to fold its window size into"
    )


_READERS: dict[type, Callable[[_Translator, str, Any], None]] = {
    nir.Conv2d: _conv,
    nir.Affine: _dense,
    nir.Linear: _dense,
    nir.AvgPool2d: _pool,
    nir.SumPool2d: _pool,
    nir.Flatten: _flatten,
    nir.LIF: _neuron,
    nir.IF: _neuron,
    nir.CubaLIF: _neuron,
}
