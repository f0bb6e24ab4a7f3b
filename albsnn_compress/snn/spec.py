"""Architectures declared as data, and the spiking network built from them.

A spec is a JSON-able dict, so a checkpoint (and a ``.albsnn`` container) carries
its own architecture and no code is ever unpickled to rebuild a model::

    {
      "name": "fmnist-vgg",
      "input": {"shape": [1, 28, 28], "mean": [0.286], "std": [0.353]},
      "num_classes": 10,
      "neuron": {"tau": 2.0, "v_threshold": 1.0, "reset": "hard", ...},
      "layers": [
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "bn"}, {"type": "lif"}, {"type": "avgpool", "kernel_size": 2},
        ...,
        {"type": "conv", "out_channels": 10, "kernel_size": 1}, {"type": "bn"}, {"type": "gap"}
      ]
    }

Layer types are the records of :mod:`albsnn_compress.snn.layer_types` (``conv``,
``linear``, ``bn``, ``lif``, ``avgpool``, ``maxpool``, ``gap``, ``flatten`` built
in). :func:`normalize_spec` checks every value, fills every default and gives each
layer a unique ``name`` (``conv1``, ``bn1``, ``lif1``, ... unless given), so
``normalize_spec(net.spec) == net.spec`` and state-dict keys are readable
(``layers.conv3.weight``). Input images are in ``[0, 1]``; the network applies
the spec's ``mean``/``std`` itself, so every exported form needs no extra
preprocessing beyond scaling pixels to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from albsnn_compress.errors import SpecError, one_line
from albsnn_compress.limits import MAX_ELEMENTS, MAX_NAME_CHARS, check_name, element_count
from albsnn_compress.snn.fields import finite_float, positive_float, positive_int
from albsnn_compress.snn.layer_types import LAYER_TYPES, Shape, layer_type
from albsnn_compress.snn.neurons import DEFAULT_NEURON, NEURON_FIELDS, normalize_neuron

__all__ = [
    "SpikingNet",
    "normalize_spec",
    "check_spec_name",
    "MAX_INPUT_CHANNELS",
    "build_model",
    "spec_bounds",
    "layer_shapes",
    "shared_layer_count",
    "LAYER_TYPES",
    "NEURON_FIELDS",
    "DEFAULT_NEURON",
]


_MAX_LAYERS = 4096

MAX_INPUT_CHANNELS = 1 << 16
"""Channels of a spec's input: far above any image (1 grey, 3 RGB, 2 event polarities, hundreds of spectral bands),
and small enough that the per-channel ``mean``/``std`` lists cost at most 512 KiB each."""


def _normalize_layer(raw: Any, index: int, counters: dict[str, int]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"layer {index}: expected an object like {{'type': 'conv', ...}}, got {raw!r}")
    try:
        record = layer_type(raw.get("type"))
    except SpecError as exc:
        raise SpecError(f"layer {index}: {exc}") from exc
    kind = record.name
    unknown = set(raw) - set(record.fields) - {"type", "name"}
    if unknown:
        raise SpecError(f"layer {index} ({kind}): unknown keys {sorted(unknown)}; allowed {sorted(record.fields)}")
    counters[kind] = counters.get(kind, 0) + 1
    name = check_name(raw.get("name", f"{kind}{counters[kind]}"), f"layer {index} name", SpecError, MAX_NAME_CHARS)
    if not name.isidentifier():
        raise SpecError(f"layer {index}: name must be a Python identifier, got {name!r}")
    layer: dict[str, Any] = {"type": kind, "name": name}
    for key, spec_field in record.fields.items():
        if key not in raw and spec_field.required:
            raise SpecError(f"layer {index} ({kind}): missing required key {key!r}")
        value = raw.get(key, spec_field.default)
        layer[key] = spec_field.check(value, f"layer {layer['name']} {key}")
    return layer


def _shown(value: Any) -> str:
    """``value`` for a message: short, on one line, and never an exception (a 5,000-digit int has no repr)."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        return one_line(repr(value), 80)
    except ValueError:
        holder = "" if type(value) is int else f"a {type(value).__name__} holding "
        return f"{holder}an integer too large to print"


def _normalize_input(inp: Any) -> dict[str, Any]:
    if not isinstance(inp, dict) or "shape" not in inp:
        raise SpecError("spec 'input' must be an object with 'shape' [C, H, W]")
    shape = inp["shape"]
    if not isinstance(shape, list) or len(shape) != 3:
        raise SpecError(f"spec input shape must be [C, H, W], got {_shown(shape)}")
    for i, dim in enumerate(shape):
        if type(dim) is not int or dim < 1:
            raise SpecError(f"spec input shape[{i}] must be an integer >= 1, got {_shown(dim)}")
        if dim > MAX_ELEMENTS:  # before element_count prints the shape: a 5,000-digit int has no repr
            raise SpecError(f"spec input shape[{i}] is more than {MAX_ELEMENTS}; the spec is damaged or hostile")
    element_count(shape, "spec input", SpecError, MAX_ELEMENTS)
    channels = shape[0]
    if channels > MAX_INPUT_CHANNELS:
        raise SpecError(f"spec input shape[0]: {channels} channels, at most {MAX_INPUT_CHANNELS} allowed")
    stats = {}
    for label, default, check in (("mean", 0.0, finite_float), ("std", 1.0, positive_float)):
        values = inp[label] if label in inp else [default] * channels  # built only when absent, and bounded
        if not isinstance(values, list) or len(values) != channels:
            raise SpecError(f"spec input {label} must be a list of {channels} numbers, got {_shown(values)}")
        stats[label] = [check(v, f"spec input {label}[{i}]") for i, v in enumerate(values)]
    return {"shape": list(shape), "mean": stats["mean"], "std": stats["std"]}


def normalize_spec(spec: Any) -> dict[str, Any]:
    """Validate a spec and return a copy with every default and layer name filled in.

    Every number is checked where it enters: its type (``true`` is not an integer,
    ``"nan"`` is not a number), finiteness and range, with the layer and key named.
    Names (the model's and each layer's) are non-empty, at most
    :data:`~albsnn_compress.limits.MAX_NAME_CHARS` (256) characters and free of
    control characters, so any reader or importer refuses a bad one before a run.
    The input shape holds at most :data:`~albsnn_compress.limits.MAX_ELEMENTS`
    elements and :data:`MAX_INPUT_CHANNELS` channels, checked before anything is built from it.

    Raises:
        SpecError: naming the layer and key that is wrong.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"architecture spec must be a JSON object, got {type(spec).__name__}")
    for key in ("input", "num_classes", "layers"):
        if key not in spec:
            raise SpecError(f"architecture spec is missing {key!r}")
    inp = _normalize_input(spec["input"])
    layers_raw = spec["layers"]
    if not isinstance(layers_raw, list) or not layers_raw or len(layers_raw) > _MAX_LAYERS:
        raise SpecError(f"spec 'layers' must be a non-empty list of at most {_MAX_LAYERS} layers")
    neuron = normalize_neuron(spec.get("neuron", {}), "spec neuron")
    counters: dict[str, int] = {}
    layers = [_normalize_layer(raw, i, counters) for i, raw in enumerate(layers_raw)]
    names = [layer["name"] for layer in layers]
    if len(set(names)) != len(names):
        raise SpecError(f"spec layer names must be unique, got {names}")
    return {
        "name": check_spec_name(spec.get("name", "custom")),
        "input": inp,
        "num_classes": _num_classes(spec["num_classes"]),
        "neuron": neuron,
        "layers": layers,
    }


def check_spec_name(value: Any, where: str = "spec name") -> str:
    """``value`` as a model's name: a non-empty string of at most ``MAX_NAME_CHARS`` (256) characters, no control
    characters.

    Raises:
        SpecError: naming ``where``.
    """
    return check_name(value, where, SpecError, MAX_NAME_CHARS)


def _num_classes(value: Any) -> int:
    if type(value) is not int or value < 2:
        raise SpecError(f"spec num_classes must be an integer >= 2, got {_shown(value)}")
    return value


def layer_shapes(spec: dict[str, Any]) -> list[tuple[Shape, Shape]]:
    """``(input shape, output shape)`` of every layer of a normalized spec, by integer arithmetic only."""
    shape: Shape = tuple(spec["input"]["shape"])
    shapes = []
    for layer in spec["layers"]:
        record = LAYER_TYPES[layer["type"]]
        record.check_input(layer, shape)
        out = record.output_shape(layer, shape)
        shapes.append((shape, out))
        shape = out
    return shapes


def spec_bounds(spec: dict[str, Any]) -> tuple[int, int]:
    """``(parameter count, largest per-sample activation)`` of a normalized spec, in elements.

    Pure integer arithmetic from the layer types' records, so a hostile spec is
    measured before anything is allocated; a test checks the numbers against real
    :class:`SpikingNet` models.

    Raises:
        SpecError: a layer gets an input of the wrong rank or does not fit it.
    """
    params, largest = 0, math.prod(spec["input"]["shape"])
    for layer, (shape, out) in zip(spec["layers"], layer_shapes(spec)):
        params += LAYER_TYPES[layer["type"]].parameters(layer, shape)
        largest = max(largest, math.prod(out))
    return params, largest


def shared_layer_count(spec: dict[str, Any]) -> int:
    """How many leading layers of a normalized spec run once for all time steps: those before the first temporal one.

    With direct encoding every step feeds the same image, so a layer without state
    over time (conv, batch norm, pooling, ...) ahead of the first neuron gives the
    same output at every step.
    """
    layers = spec["layers"]
    return next((index for index, layer in enumerate(layers) if LAYER_TYPES[layer["type"]].temporal), len(layers))


class SpikingNet(nn.Module):
    """A spiking network built from a spec; maps images in ``[0, 1]`` to logits.

    The forward pass normalizes the input, feeds the same analog image at every one
    of ``timesteps`` steps (direct encoding), runs the layers on ``[T, B, ...]`` and
    returns the time-mean of the last layer: ``[B, num_classes]`` logits.

    The layers before the first temporal one (the first neuron) see that same image
    at every step, so they run once, on ``[1, B, ...]``, and their output is repeated
    over the steps as a view: at T > 1 the first convolution and batch norm cost
    what they cost at T = 1 (batch norm's statistics over identical copies are those
    of one copy). The ONNX export builds its graph the same way.
    """

    input_mean: torch.Tensor
    """The spec's input ``mean`` as a ``[1, C, 1, 1]`` buffer (not stored in the state dict)."""
    input_std: torch.Tensor
    """The spec's input ``std`` as a ``[1, C, 1, 1]`` buffer (not stored in the state dict)."""
    metadata: dict[str, Any]
    """What the file (or the import) the model came from records; set by the readers, absent on a new model."""

    def __init__(self, spec: dict[str, Any], timesteps: int = 1) -> None:
        super().__init__()
        self.spec = normalize_spec(spec)
        self.timesteps = positive_int(timesteps, "timesteps")
        inp = self.spec["input"]
        channels = inp["shape"][0]
        self.register_buffer("input_mean", torch.tensor(inp["mean"]).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(inp["std"]).view(1, channels, 1, 1), persistent=False)
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        shapes = layer_shapes(self.spec)
        for layer, (shape, _) in zip(self.spec["layers"], shapes):
            modules[layer["name"]] = LAYER_TYPES[layer["type"]].build(layer, shape, self.spec["neuron"])
        shape = shapes[-1][1]
        if shape != (self.spec["num_classes"],):
            raise SpecError(
                f"the last layer outputs shape {list(shape)}, expected [{self.spec['num_classes']}] "
                "(num_classes); end with a conv to num_classes channels and gap, or a linear layer"
            )
        self.layers = nn.Sequential(modules)
        self.shared_layers = shared_layer_count(self.spec)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs ``[T, B, num_classes]`` for images ``x`` of ``[B, C, H, W]``."""
        steps = ((x - self.input_mean) / self.input_std).unsqueeze(0)
        for index, module in enumerate(self.layers):
            if index == self.shared_layers:
                steps = steps.expand(self.timesteps, *steps.shape[1:])
            steps = module(steps)
        return steps.expand(self.timesteps, *steps.shape[1:])  # a view; no copy when already T steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).mean(dim=0)


def build_model(spec: dict[str, Any], timesteps: int = 1) -> SpikingNet:
    """Build a freshly initialised :class:`SpikingNet` from ``spec``."""
    return SpikingNet(spec, timesteps)
