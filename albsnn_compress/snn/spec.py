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

Layer types: ``conv``, ``linear``, ``bn``, ``lif``, ``avgpool``, ``maxpool``,
``gap``, ``flatten``. :func:`normalize_spec` fills every default and gives each
layer a unique ``name`` (``conv1``, ``bn1``, ``lif1``, ... unless given), so
``normalize_spec(net.spec) == net.spec`` and state-dict keys are readable
(``layers.conv3.weight``). Input images are in ``[0, 1]``; the network applies
the spec's ``mean``/``std`` itself, so every exported form needs no extra
preprocessing beyond scaling pixels to ``[0, 1]``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from albsnn_compress.errors import SpecError
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

__all__ = ["SpikingNet", "normalize_spec", "build_model", "LAYER_TYPES", "DEFAULT_NEURON"]

DEFAULT_NEURON: dict[str, Any] = {
    "tau": 2.0,
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "reset": "hard",
    "detach_reset": True,
    "surrogate": {"name": "arctan", "alpha": 2.0},
}

_REQUIRED = "<required>"

# Allowed keys and their defaults per layer type.
LAYER_TYPES: dict[str, dict[str, Any]] = {
    "conv": {"out_channels": _REQUIRED, "kernel_size": 3, "stride": 1, "padding": 0, "groups": 1, "bias": False},
    "linear": {"out_features": _REQUIRED, "bias": True},
    "bn": {"eps": 1e-5, "momentum": 0.1},
    "lif": {},
    "avgpool": {"kernel_size": 2, "stride": None},
    "maxpool": {"kernel_size": 2, "stride": None},
    "gap": {},
    "flatten": {},
}

_MAX_LAYERS = 4096


def _check_int(value: Any, where: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise SpecError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _normalize_layer(raw: Any, index: int, counters: dict[str, int]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"layer {index}: expected an object like {{'type': 'conv', ...}}, got {raw!r}")
    kind = raw.get("type")
    if kind not in LAYER_TYPES:
        raise SpecError(f"layer {index}: unknown type {kind!r}; choose one of {sorted(LAYER_TYPES)}")
    allowed = LAYER_TYPES[kind]
    unknown = set(raw) - set(allowed) - {"type", "name"}
    if unknown:
        raise SpecError(f"layer {index} ({kind}): unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
    counters[kind] = counters.get(kind, 0) + 1
    layer: dict[str, Any] = {"type": kind, "name": raw.get("name", f"{kind}{counters[kind]}")}
    if not isinstance(layer["name"], str) or not layer["name"].isidentifier():
        raise SpecError(f"layer {index}: name must be a Python identifier, got {layer['name']!r}")
    for key, default in allowed.items():
        if key not in raw and default == _REQUIRED:
            raise SpecError(f"layer {index} ({kind}): missing required key {key!r}")
        layer[key] = raw.get(key, default)
    return layer


def normalize_spec(spec: Any) -> dict[str, Any]:
    """Validate a spec and return a copy with every default and layer name filled in.

    Raises:
        SpecError: naming the layer and key that is wrong.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"architecture spec must be a JSON object, got {type(spec).__name__}")
    for key in ("input", "num_classes", "layers"):
        if key not in spec:
            raise SpecError(f"architecture spec is missing {key!r}")
    inp = spec["input"]
    if not isinstance(inp, dict) or "shape" not in inp:
        raise SpecError("spec 'input' must be an object with 'shape' [C, H, W]")
    shape = inp["shape"]
    if not isinstance(shape, list) or len(shape) != 3:
        raise SpecError(f"spec input shape must be [C, H, W], got {shape!r}")
    for i, dim in enumerate(shape):
        _check_int(dim, f"spec input shape[{i}]", 1)
    channels = shape[0]
    mean = inp.get("mean", [0.0] * channels)
    std = inp.get("std", [1.0] * channels)
    for label, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or len(values) != channels or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise SpecError(f"spec input {label} must be a list of {channels} numbers, got {values!r}")
    if any(v <= 0 for v in std):
        raise SpecError(f"spec input std must be positive, got {std!r}")
    layers_raw = spec["layers"]
    if not isinstance(layers_raw, list) or not layers_raw or len(layers_raw) > _MAX_LAYERS:
        raise SpecError(f"spec 'layers' must be a non-empty list of at most {_MAX_LAYERS} layers")
    neuron = dict(DEFAULT_NEURON)
    neuron_raw = spec.get("neuron", {})
    if not isinstance(neuron_raw, dict) or set(neuron_raw) - set(DEFAULT_NEURON):
        raise SpecError(f"spec 'neuron' keys must be among {sorted(DEFAULT_NEURON)}, got {neuron_raw!r}")
    neuron.update(neuron_raw)
    counters: dict[str, int] = {}
    layers = [_normalize_layer(raw, i, counters) for i, raw in enumerate(layers_raw)]
    names = [layer["name"] for layer in layers]
    if len(set(names)) != len(names):
        raise SpecError(f"spec layer names must be unique, got {names}")
    return {
        "name": str(spec.get("name", "custom")),
        "input": {"shape": list(shape), "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "num_classes": _check_int(spec["num_classes"], "spec num_classes", 2),
        "neuron": copy.deepcopy(neuron),
        "layers": layers,
    }


def _make_layer(layer: dict[str, Any], shape: tuple[int, ...], neuron: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """Build one layer for a per-sample input ``shape``; return it and its output shape."""
    kind, name = layer["type"], layer["name"]
    if kind in ("conv", "bn", "avgpool", "maxpool", "gap") and len(shape) != 3 and not (kind == "bn" and len(shape) == 1):
        raise SpecError(f"layer {name} ({kind}) needs a [C, H, W] input, got {list(shape)}; add or remove a flatten")
    try:
        if kind == "conv":
            for key in ("out_channels", "kernel_size", "stride", "groups"):
                _check_int(layer[key], f"layer {name} {key}", 1)
            _check_int(layer["padding"], f"layer {name} padding", 0)
            module: nn.Module = TimeConv2d(
                shape[0], layer["out_channels"], layer["kernel_size"], layer["stride"],
                layer["padding"], groups=layer["groups"], bias=bool(layer["bias"]),
            )
        elif kind == "linear":
            if len(shape) != 1:
                raise SpecError(f"layer {name} (linear) needs a flat input, got {list(shape)}; add a flatten or gap")
            module = TimeLinear(shape[0], _check_int(layer["out_features"], f"layer {name} out_features", 1), bias=bool(layer["bias"]))
        elif kind == "bn":
            bn_cls = TimeBatchNorm2d if len(shape) == 3 else TimeBatchNorm1d
            module = bn_cls(shape[0], eps=float(layer["eps"]), momentum=float(layer["momentum"]))
        elif kind == "lif":
            module = LIF(**neuron)
        elif kind in ("avgpool", "maxpool"):
            pool_cls = TimeAvgPool2d if kind == "avgpool" else TimeMaxPool2d
            _check_int(layer["kernel_size"], f"layer {name} kernel_size", 1)
            module = pool_cls(layer["kernel_size"], layer["stride"])
        elif kind == "gap":
            module = TimeGlobalAvgPool()
        else:
            module = TimeFlatten()
        module.eval()  # probe the output shape without touching batch-norm statistics
        with torch.no_grad():
            out = module(torch.zeros((1, 1, *shape)))
        module.train()
    except SpecError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:
        raise SpecError(f"layer {name} ({kind}) does not fit input shape {list(shape)}: {exc}") from None
    return module, tuple(out.shape[2:])


class SpikingNet(nn.Module):
    """A spiking network built from a spec; maps images in ``[0, 1]`` to logits.

    The forward pass normalizes the input, feeds the same analog image at every one
    of ``timesteps`` steps (direct encoding), runs the layers on ``[T, B, ...]`` and
    returns the time-mean of the last layer: ``[B, num_classes]`` logits.
    """

    def __init__(self, spec: dict[str, Any], timesteps: int = 1) -> None:
        super().__init__()
        self.spec = normalize_spec(spec)
        self.timesteps = _check_int(timesteps, "timesteps", 1)
        inp = self.spec["input"]
        channels = inp["shape"][0]
        self.register_buffer("input_mean", torch.tensor(inp["mean"]).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(inp["std"]).view(1, channels, 1, 1), persistent=False)
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        shape: tuple[int, ...] = tuple(inp["shape"])
        for layer in self.spec["layers"]:
            modules[layer["name"]], shape = _make_layer(layer, shape, self.spec["neuron"])
        if shape != (self.spec["num_classes"],):
            raise SpecError(
                f"the last layer outputs shape {list(shape)}, expected [{self.spec['num_classes']}] "
                "(num_classes); end with a conv to num_classes channels and gap, or a linear layer"
            )
        self.layers = nn.Sequential(modules)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs ``[T, B, num_classes]`` for images ``x`` of ``[B, C, H, W]``."""
        x = (x - self.input_mean) / self.input_std
        steps = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        return self.layers(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).mean(dim=0)


def build_model(spec: dict[str, Any], timesteps: int = 1) -> SpikingNet:
    """Build a freshly initialised :class:`SpikingNet` from ``spec``."""
    return SpikingNet(spec, timesteps)
