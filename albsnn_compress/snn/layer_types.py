"""One record per layer type: everything the package knows about ``conv``, ``bn``, ``lif``, ...

A spec layer ``{"type": "conv", ...}`` is described by exactly one
:class:`LayerType`: its spec keys with defaults and checks, the module it
builds, its output shape and parameter count (pure integer arithmetic, so a
hostile file is measured before anything is allocated), which of its tensors
may be stored at 1 bit, and its ONNX nodes. The spec, the checkpoint and
container checks, binarization, storage accounting, the ONNX export and the
report all dispatch on this record, so a new layer type is one new entry::

    register_layer_type(LayerType(
        name="scale", modules=(TimeScale,), fields={"init": Field(1.0, finite_float)},
        build=lambda layer, shape, neuron: TimeScale(shape[0], layer["init"]),
        output_shape=same_shape, parameters=lambda layer, shape: shape[0],
        onnx=scale_onnx,
    ))

(docs/architecture.md walks through this example; tests/test_layer_types.py runs it
through spec, container and ONNX.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from albsnn_compress.errors import SpecError
from albsnn_compress.snn import onnx_mapping
from albsnn_compress.snn.fields import (
    REQUIRED,
    Field,
    boolean,
    fraction,
    nonnegative_int,
    optional_positive_int,
    positive_float,
    positive_int,
)
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
from albsnn_compress.snn.neurons import LIF, PER_CHANNEL, normalize_neuron

__all__ = [
    "Shape",
    "LayerType",
    "LAYER_TYPES",
    "register_layer_type",
    "registered",
    "layer_type",
    "layer_type_of",
    "is_binarizable",
    "same_shape",
    "no_parameters",
]

Shape = tuple[int, ...]
"""A per-sample shape: ``(C, H, W)`` for maps, ``(F,)`` for features."""

Layer = dict[str, Any]
"""One normalized spec layer: ``type``, ``name`` and every key of its type."""


def same_shape(_layer: Layer, shape: Shape) -> Shape:
    """Output shape of a layer that keeps its input's shape."""
    return shape


def no_parameters(_layer: Layer, _shape: Shape) -> int:
    """Parameter count of a layer that stores no tensor."""
    return 0


@dataclass(frozen=True)
class LayerType:
    """Everything one layer type means, in one place.

    Attributes:
        name: the spec's ``"type"``; layers are auto-named ``<name>1``, ``<name>2``, ...
        modules: the torch classes this type builds; a module is of this type if it is an
            instance of one of them (so a plain ``nn.Conv2d`` counts as ``conv``).
        fields: spec keys besides ``type`` and ``name``, with defaults and checks.
        build: ``(layer, input shape, neuron settings) -> module``.
        output_shape: ``(layer, input shape) -> output shape``, integers only; raises
            :class:`SpecError` when the layer does not fit its input.
        parameters: ``(layer, input shape) -> elements stored for inference`` (parameters
            and persistent buffers, not ``num_batches_tracked``), integers only.
        input_ranks: the input ranks accepted (1 = features, 3 = maps); ``None`` = any.
        binarizable: tensor names that may be stored at 1 bit (with a per-channel scale).
        onnx: ``(graph, layer name, module, input) -> output``, see :mod:`.onnx_mapping`.
        absorbs_input_scale: its ONNX form can fold a per-channel factor of the layer before
            (batch norm absorbs the ``alpha`` of a bias-free binarized conv).
        temporal: the layer has state over time steps (a neuron); the rest run once per step.
    """

    name: str
    modules: tuple[type[nn.Module], ...]
    fields: dict[str, Field]
    build: Callable[[Layer, Shape, dict[str, Any]], nn.Module]
    output_shape: Callable[[Layer, Shape], Shape]
    onnx: Callable[[onnx_mapping.GraphEmitter, str, Any, str], str]
    parameters: Callable[[Layer, Shape], int] = no_parameters
    input_ranks: tuple[int, ...] | None = None
    binarizable: tuple[str, ...] = ()
    absorbs_input_scale: bool = False
    temporal: bool = False
    description: str = field(default="", compare=False)

    def label(self, module: nn.Module) -> str:
        """The torch class name a report shows for ``module`` (e.g. ``Conv2d``, ``BatchNorm1d``)."""
        for cls in self.modules:
            if isinstance(module, cls):
                return cls.__name__
        return type(module).__name__

    def check_input(self, layer: Layer, shape: Shape) -> None:
        """Refuse an input of the wrong rank, naming the layer and the fix."""
        if self.input_ranks is None or len(shape) in self.input_ranks:
            return
        wanted = " or ".join("a [C, H, W]" if rank == 3 else "a flat" for rank in self.input_ranks)
        if self.input_ranks == (1,):
            fix = "add a flatten or gap (or give the spec a flat [F] input)"
        else:
            fix = "remove the flatten before it, or give the spec a [C, H, W] input instead of a flat one"
        raise SpecError(f"layer {layer['name']} ({self.name}) needs {wanted} input, got {list(shape)}; {fix}")


LAYER_TYPES: dict[str, LayerType] = {}
"""Every known layer type by its spec name, in registration order."""


def register_layer_type(record: LayerType) -> LayerType:
    """Add a layer type; its name must be new. Returns ``record``.

    Raises:
        SpecError: the name is taken or not an identifier.
    """
    if not record.name.isidentifier() or record.name in LAYER_TYPES:
        raise SpecError(f"layer type {record.name!r} is already registered or not an identifier; choose a new name")
    LAYER_TYPES[record.name] = record
    return record


@contextmanager
def registered(record: LayerType) -> Iterator[LayerType]:
    """Register ``record`` for the duration of a ``with`` block (tests, experiments)."""
    register_layer_type(record)
    try:
        yield record
    finally:
        del LAYER_TYPES[record.name]


def layer_type(name: Any) -> LayerType:
    """The record of spec type ``name``.

    Raises:
        SpecError: naming the unknown type and listing the known ones.
    """
    if not isinstance(name, str) or name not in LAYER_TYPES:
        raise SpecError(f"unknown layer type {name!r}; choose one of {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[name]


def layer_type_of(module: nn.Module) -> LayerType | None:
    """The record whose modules ``module`` is an instance of, or ``None`` (containers, foreign modules)."""
    for record in LAYER_TYPES.values():
        if isinstance(module, record.modules):
            return record
    return None


def is_binarizable(module: nn.Module) -> bool:
    """Whether ``module``'s ``weight`` may be stored at 1 bit."""
    record = layer_type_of(module)
    return record is not None and "weight" in record.binarizable


# -- the built-in types ------------------------------------------------------------


def _span(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _spatial(layer: Layer, shape: Shape, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    height, width = (_span(size, kernel, stride, padding) for size in shape[1:])
    if height < 1 or width < 1:
        raise SpecError(
            f"layer {layer['name']} ({layer['type']}): kernel {kernel} with padding {padding} does not fit "
            f"input {list(shape)}; use a smaller kernel or more padding"
        )
    return height, width


def _conv_shape(layer: Layer, shape: Shape) -> Shape:
    groups = layer["groups"]
    if shape[0] % groups or layer["out_channels"] % groups:
        raise SpecError(
            f"layer {layer['name']} (conv): groups={groups} must divide both the {shape[0]} input and the "
            f"{layer['out_channels']} output channels"
        )
    return (layer["out_channels"], *_spatial(layer, shape, layer["kernel_size"], layer["stride"], layer["padding"]))


def _conv_parameters(layer: Layer, shape: Shape) -> int:
    out: int = layer["out_channels"]
    groups: int = layer["groups"]
    kernel: int = layer["kernel_size"]
    return out * (shape[0] // groups) * kernel**2 + (out if layer["bias"] else 0)


def _pool_stride(layer: Layer) -> int:
    stride: int = layer["kernel_size"] if layer["stride"] is None else layer["stride"]
    return stride


def _pool_shape(layer: Layer, shape: Shape) -> Shape:
    return (shape[0], *_spatial(layer, shape, layer["kernel_size"], _pool_stride(layer), 0))


def _build_pool(cls: type[nn.Module]) -> Callable[[Layer, Shape, dict[str, Any]], nn.Module]:
    return lambda layer, _shape, _neuron: cls(layer["kernel_size"], layer["stride"])


def _build_bn(layer: Layer, shape: Shape, _neuron: dict[str, Any]) -> nn.Module:
    cls = TimeBatchNorm2d if len(shape) == 3 else TimeBatchNorm1d
    return cls(shape[0], eps=layer["eps"], momentum=layer["momentum"])


register_layer_type(
    LayerType(
        name="conv",
        modules=(nn.Conv2d,),
        fields={
            "out_channels": Field(REQUIRED, positive_int),
            "kernel_size": Field(3, positive_int),
            "stride": Field(1, positive_int),
            "padding": Field(0, nonnegative_int),
            "groups": Field(1, positive_int),
            "bias": Field(False, boolean),
        },
        build=lambda layer, shape, _neuron: TimeConv2d(
            shape[0],
            layer["out_channels"],
            layer["kernel_size"],
            layer["stride"],
            layer["padding"],
            groups=layer["groups"],
            bias=layer["bias"],
        ),
        output_shape=_conv_shape,
        parameters=_conv_parameters,
        input_ranks=(3,),
        binarizable=("weight",),
        onnx=onnx_mapping.conv_onnx,
        description="2-D convolution (square kernel, zero padding)",
    )
)

register_layer_type(
    LayerType(
        name="linear",
        modules=(nn.Linear,),
        fields={"out_features": Field(REQUIRED, positive_int), "bias": Field(True, boolean)},
        build=lambda layer, shape, _neuron: TimeLinear(shape[0], layer["out_features"], bias=layer["bias"]),
        output_shape=lambda layer, _shape: (layer["out_features"],),
        parameters=lambda layer, shape: layer["out_features"] * (shape[0] + int(layer["bias"])),
        input_ranks=(1,),
        binarizable=("weight",),
        onnx=onnx_mapping.linear_onnx,
        description="fully connected layer",
    )
)

register_layer_type(
    LayerType(
        name="bn",
        modules=(nn.BatchNorm2d, nn.BatchNorm1d),
        fields={"eps": Field(1e-5, positive_float), "momentum": Field(0.1, fraction)},
        build=_build_bn,
        output_shape=same_shape,
        parameters=lambda _layer, shape: 4 * shape[0],  # weight, bias, running mean and variance
        input_ranks=(1, 3),
        onnx=onnx_mapping.batch_norm_onnx,
        absorbs_input_scale=True,
        description="batch norm over channels, statistics shared across time steps",
    )
)


def _neuron_overrides(value: Any, where: str) -> dict[str, Any]:
    return normalize_neuron(value, where, partial=True)


def _per_channel(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or len(set(value)) != len(value) or set(value) - set(PER_CHANNEL):
        raise SpecError(f"{where} must be a list of distinct settings among {list(PER_CHANNEL)}, got {value!r}")
    return [name for name in PER_CHANNEL if name in value]


def _build_lif(layer: Layer, shape: Shape, neuron: dict[str, Any]) -> nn.Module:
    channel_shape = (shape[0], 1, 1) if len(shape) == 3 else (shape[0],)
    return LIF(**{**neuron, **layer["neuron"]}, per_channel=layer["per_channel"], channel_shape=channel_shape)


register_layer_type(
    LayerType(
        name="lif",
        modules=(LIF,),
        fields={"neuron": Field({}, _neuron_overrides), "per_channel": Field([], _per_channel)},
        build=_build_lif,
        output_shape=same_shape,
        parameters=lambda layer, shape: len(layer["per_channel"]) * shape[0],
        onnx=onnx_mapping.lif_onnx,
        temporal=True,
        description="spiking neurons: the spec's neuron settings, overridden per layer, some per channel",
    )
)

for _name, _torch_cls, _time_cls in (
    ("avgpool", nn.AvgPool2d, TimeAvgPool2d),
    ("maxpool", nn.MaxPool2d, TimeMaxPool2d),
):
    register_layer_type(
        LayerType(
            name=_name,
            modules=(_torch_cls,),
            fields={"kernel_size": Field(2, positive_int), "stride": Field(None, optional_positive_int)},
            build=_build_pool(_time_cls),
            output_shape=_pool_shape,
            input_ranks=(3,),
            onnx=onnx_mapping.pool_onnx,
            description=f"{_name[:3]} pooling (stride defaults to the kernel size)",
        )
    )

register_layer_type(
    LayerType(
        name="gap",
        modules=(TimeGlobalAvgPool,),
        fields={},
        build=lambda _layer, _shape, _neuron: TimeGlobalAvgPool(),
        output_shape=lambda _layer, shape: shape[:1],
        input_ranks=(3,),
        onnx=onnx_mapping.gap_onnx,
        description="global average pooling, the paper's classification head",
    )
)

register_layer_type(
    LayerType(
        name="flatten",
        modules=(TimeFlatten,),
        fields={},
        build=lambda _layer, _shape, _neuron: TimeFlatten(),
        output_shape=lambda _layer, shape: (math.prod(shape),),
        onnx=onnx_mapping.flatten_onnx,
        description="flatten each sample's features",
    )
)
