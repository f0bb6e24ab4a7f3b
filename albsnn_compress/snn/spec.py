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

An input is ``[C, H, W]`` (images; ``mean``/``std`` one per channel) or ``[F]``
(feature vectors: fully connected networks, snnTorch's first tutorials, most NIR
graphs of MLPs; ``mean``/``std`` one number for every feature, the default, or
one per feature). A vector's channels are its features (``bn`` and per-channel
neurons on ``[F]`` hold one value per feature), so one per feature is the general
form (standardized features, a flattened multi-channel image); one number is what
a flattened one-channel image was normalized with
(``transforms.Normalize((m,), (s,))`` before ``view(batch, -1)``) and keeps the
spec small. A flat model runs on any samples of ``F`` elements, flattened
row-major (:func:`accepts_input_shape`): that is how it takes a dataset's images.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
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
    "INPUT_RANKS",
    "is_flat_input",
    "accepts_input_shape",
    "flat_statistics",
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
and small enough that the per-channel ``mean``/``std`` lists cost at most 512 KiB each. A flat input of at most
this many features may have one ``mean``/``std`` per feature (more features: one number for all)."""

INPUT_RANKS = (1, 3)
"""Ranks of a spec's per-sample input: ``[F]`` feature vectors (an MLP on flattened images, most NIR graphs of
fully connected networks) and ``[C, H, W]`` images."""


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
        raise SpecError("spec 'input' must be an object with 'shape' [C, H, W] (images) or [F] (feature vectors)")
    shape = inp["shape"]
    if not isinstance(shape, list) or len(shape) not in INPUT_RANKS:
        raise SpecError(f"spec input shape must be [C, H, W] (images) or [F] (feature vectors), got {_shown(shape)}")
    for i, dim in enumerate(shape):
        if type(dim) is not int or dim < 1:
            raise SpecError(f"spec input shape[{i}] must be an integer >= 1, got {_shown(dim)}")
        if dim > MAX_ELEMENTS:  # before element_count prints the shape: a 5,000-digit int has no repr
            raise SpecError(f"spec input shape[{i}] is more than {MAX_ELEMENTS}; the spec is damaged or hostile")
    element_count(shape, "spec input", SpecError, MAX_ELEMENTS)
    if len(shape) == 3 and shape[0] > MAX_INPUT_CHANNELS:
        raise SpecError(f"spec input shape[0]: {shape[0]} channels, at most {MAX_INPUT_CHANNELS} allowed")
    counts = _stat_counts(shape)
    stats = {}
    for label, default, check in (("mean", 0.0, finite_float), ("std", 1.0, positive_float)):
        values = inp[label] if label in inp else [default] * counts[0]  # built only when absent, and bounded
        if not isinstance(values, list) or len(values) not in counts:
            raise SpecError(f"spec input {label} must be a list of {_stat_wording(shape)}, got {_shown(values)}")
        stats[label] = [check(v, f"spec input {label}[{i}]") for i, v in enumerate(values)]
    return {"shape": list(shape), "mean": stats["mean"], "std": stats["std"]}


def _stat_counts(shape: list[int]) -> tuple[int, ...]:
    """How many numbers ``mean`` and ``std`` may hold for an input of ``shape`` (the first is the default's)."""
    if len(shape) == 3:
        return (shape[0],)
    return (1, shape[0]) if 1 < shape[0] <= MAX_INPUT_CHANNELS else (1,)


def _stat_wording(shape: list[int]) -> str:
    if len(shape) == 3:
        return f"{shape[0]} numbers"
    if 1 < shape[0] <= MAX_INPUT_CHANNELS:
        return f"1 number (for every feature) or {shape[0]} (one per feature)"
    if shape[0] == 1:
        return "1 number"
    return f"1 number (for every feature; one per feature only up to {MAX_INPUT_CHANNELS} features)"


def is_flat_input(spec: dict[str, Any]) -> bool:
    """Whether a normalized spec takes feature vectors ``[F]`` (rank 1) rather than images ``[C, H, W]``."""
    return len(spec["input"]["shape"]) == 1


def flat_statistics(values: Sequence[float], shape: Sequence[int]) -> list[float]:
    """Per-channel ``mean`` or ``std`` of ``[C, H, W]`` inputs as those of the inputs flattened row-major: one number
    when every channel has the same (a one-channel image), else each channel's value over its ``H * W`` features.
    Statistics of a flat ``shape`` are returned as they are."""
    if len(shape) != 3:
        return list(values)
    if len(set(values)) <= 1:
        return list(values[:1])
    return [value for value in values for _ in range(shape[1] * shape[2])]


def accepts_input_shape(spec: dict[str, Any], shape: Sequence[int]) -> bool:
    """Whether a model of a normalized spec runs on samples of per-sample ``shape`` (a dataset's ``[C, H, W]``).

    The spec's own shape always; and for a flat spec (input ``[F]``) any shape of ``F`` elements, which
    :meth:`SpikingNet.forward_steps` flattens row-major (``x.flatten(1)``: channel, then row, then column,
    the ``x.view(batch, -1)`` of snnTorch's tutorials). So an MLP of input ``[784]`` runs on FashionMNIST's
    ``[1, 28, 28]`` images, for training, ``compress`` and ``eval`` alike.
    """
    wanted = tuple(spec["input"]["shape"])
    given = tuple(int(size) for size in shape)
    return given == wanted or (len(wanted) == 1 and len(given) >= 1 and math.prod(given) == wanted[0])


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
    """A spiking network built from a spec; maps images in ``[0, 1]`` (or feature vectors, for a flat spec) to logits.

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
    """The spec's input ``mean`` as a ``[1, C, 1, 1]`` buffer (a flat spec: ``[1, 1]`` or ``[1, F]``; not stored in
    the state dict)."""
    input_std: torch.Tensor
    """The spec's input ``std``, shaped as ``input_mean`` (a flat spec may hold one ``std`` and ``F`` means, or the
    reverse; not stored in the state dict)."""
    metadata: dict[str, Any]
    """What the file (or the import) the model came from records; set by the readers, absent on a new model."""

    def __init__(self, spec: dict[str, Any], timesteps: int = 1) -> None:
        super().__init__()
        self.spec = normalize_spec(spec)
        self.timesteps = positive_int(timesteps, "timesteps")
        inp = self.spec["input"]
        trailing = (1, 1) if len(inp["shape"]) == 3 else ()
        self.register_buffer("input_mean", torch.tensor(inp["mean"]).view(1, -1, *trailing), persistent=False)
        self.register_buffer("input_std", torch.tensor(inp["std"]).view(1, -1, *trailing), persistent=False)
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

    def samples(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as a batch of the spec's input: unchanged, or, for a flat spec ``[F]``, samples of ``F`` elements of
        any shape (images ``[B, C, H, W]``) flattened row-major (:func:`accepts_input_shape`); a view, no copy.

        Raises:
            ValueError: a flat spec's batch whose samples do not hold ``F`` elements.
        """
        shape = self.spec["input"]["shape"]
        if len(shape) != 1 or x.dim() == 2:
            return x
        if x.dim() < 2 or math.prod(x.shape[1:]) != shape[0]:
            raise ValueError(
                f"the network takes [batch, {shape[0]}] feature vectors (or samples of {shape[0]} elements, "
                f"flattened), got a batch of shape {list(x.shape)}"
            )
        return x.flatten(1)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs ``[T, B, num_classes]`` for images ``x`` of ``[B, C, H, W]`` (a flat spec: ``[B, F]``, or
        samples of ``F`` elements flattened, see :meth:`samples`)."""
        steps = ((self.samples(x) - self.input_mean) / self.input_std).unsqueeze(0)
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
