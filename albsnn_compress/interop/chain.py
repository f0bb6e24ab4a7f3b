"""Walking another framework's ``nn.Sequential`` and building the equivalent :class:`SpikingNet`.

The importers (:mod:`.snntorch_import`, :mod:`.spikingjelly_import`) share this:

1. :func:`chain_of` flattens nested containers into the list of :class:`Link` s
   (module path, module, the container it sits in) and refuses anything that is
   not a chain;
2. a :class:`ChainBuilder` receives one spec layer per source module, with the
   source tensors it takes, and advances the per-sample shape by the layer
   types' integer arithmetic, so a wrong channel count or a pool that does not
   fit is refused, named, before anything is allocated;
3. :meth:`ChainBuilder.build` normalizes the spec, builds the network and copies
   every source tensor into its state dict (shapes checked, values unchanged).

Every refusal is one line: the module path, its type, what is wrong and what the
importer supports (:class:`~albsnn_compress.errors.InteropError`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any, NoReturn

import torch
from torch import nn

from albsnn_compress.errors import InteropError, SpecError
from albsnn_compress.snn.layer_types import LAYER_TYPES, Shape
from albsnn_compress.snn.neurons import DEFAULT_NEURON
from albsnn_compress.snn.spec import SpikingNet, normalize_spec

__all__ = [
    "Link",
    "ChainBuilder",
    "chain_of",
    "channel_values",
    "check_heaviside",
    "input_stats",
    "check_input_shape",
    "package_version",
]


@dataclass(frozen=True)
class Link:
    """One module of the chain: its path in the source network (``"3"``, ``"features.1"``), itself, and the types of
    the containers it sits in, outermost first."""

    path: str
    module: nn.Module
    within: tuple[type[nn.Module], ...]

    @property
    def label(self) -> str:
        """``module 3 (Conv2d)``: how a message names it."""
        return f"module {self.path} ({type(self.module).__name__})"


def _refuse(framework: str, what: str, reason: str, supported: str) -> NoReturn:
    raise InteropError(f"cannot import the {framework} network: {what}: {reason}; supported: {supported}")


def chain_of(net: nn.Module, framework: str, containers: Sequence[type[nn.Module]], supported: str) -> list[Link]:
    """The modules of ``net`` in order, nested containers of the exact types ``containers`` opened.

    Raises:
        InteropError: ``net`` is not one of ``containers`` (its ``forward`` could be any
            graph), or holds no module.
    """
    if type(net) not in containers:
        _refuse(
            framework,
            f"the network ({type(net).__name__})",
            "only a chain of modules can be imported and its forward() could compute any graph; "
            "write it as nn.Sequential(...)",
            supported,
        )
    links: list[Link] = []

    def visit(module: nn.Module, prefix: str, within: tuple[type[nn.Module], ...]) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if type(child) in containers:
                visit(child, path, (*within, type(child)))
            else:
                links.append(Link(path, child, within))

    visit(net, "", (type(net),))
    if not links:
        _refuse(framework, "the network", "it holds no module", supported)
    return links


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``"unknown"``."""
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def check_input_shape(input_shape: Any, framework: str) -> Shape:
    """``(C, H, W)`` as positive ints, or a refusal."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) != 3 or any(type(d) is not int or d < 1 for d in shape):
        raise InteropError(
            f"cannot import the {framework} network: input_shape must be three positive integers (C, H, W), got {input_shape!r}"
        )
    return shape


def input_stats(values: Any, channels: int, default: float, label: str, framework: str) -> list[float]:
    """A per-channel list from ``None`` (``default``), one number, or ``channels`` numbers."""
    if values is None:
        return [default] * channels
    items = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else list(values)
    if len(items) == 1:
        items = items * channels
    numbers = [float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != channels or not all(math.isfinite(v) for v in numbers) or (label == "std" and min(numbers) <= 0):
        wanted = "positive" if label == "std" else "finite"
        raise InteropError(
            f"cannot import the {framework} network: {label} must be one or {channels} {wanted} numbers (one per input channel), got {values!r}"
        )
    return numbers


def check_heaviside(fn: Any, strict: bool) -> bool:
    """Whether ``fn(x)`` is the step ``1[x > 0]`` (``strict``) or ``1[x >= 0]`` on probe values, ties and extremes included."""
    probe = torch.cat(
        [
            torch.tensor([0.0, -0.0, 1e-38, -1e-38, 1e-7, -1e-7, 1.0, -1.0, 3e38, -3e38]),
            torch.linspace(-4, 4, 81),
        ]
    )
    try:
        with torch.no_grad():
            out = fn(probe.clone())
    except Exception:  # noqa: BLE001 - any failure means "not a step function we know"
        return False
    expected = (probe > 0) if strict else (probe >= 0)
    return (
        isinstance(out, torch.Tensor) and out.shape == probe.shape and bool(torch.equal(out.float(), expected.float()))
    )


def channel_values(value: Any, shape: Shape) -> float | torch.Tensor | None:
    """A neuron setting as applied to a membrane ``[B, *shape]``: one number, one per channel, or ``None``.

    ``value`` broadcasts against the membrane as torch does (so a ``[C]`` tensor after a
    convolution runs along the *width*, not the channels). Returns a float when every
    neuron sees the same value, a ``[C]`` tensor when the value varies with the channel
    only, and ``None`` when it varies otherwise (or does not broadcast).
    """
    tensor = torch.as_tensor(value).detach().to("cpu", torch.float64)
    if tensor.dim() > len(shape) + 1:
        return None
    try:
        full = torch.broadcast_to(tensor, (1, *shape))[0]
    except RuntimeError:
        return None
    first = full.reshape(-1)[0]
    if bool((full == first).all()):
        return float(first)
    per_channel = full.reshape(shape[0], -1)
    if bool((per_channel == per_channel[:, :1]).all()):
        return per_channel[:, 0].clone()
    return None


@dataclass
class _Neuron:
    settings: dict[str, Any]
    per_channel: dict[str, torch.Tensor]


@dataclass
class ChainBuilder:
    """Collects spec layers and source tensors for one network, shape by shape.

    Attributes:
        framework: the source framework's name, for messages (``snnTorch``).
        supported: the modules the importer maps, listed in every refusal.
        shape: the per-sample shape entering the next layer.
    """

    framework: str
    supported: str
    shape: Shape
    layers: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    _neurons: dict[str, _Neuron] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def refuse(self, link: Link, reason: str) -> NoReturn:
        """Raise the one-line refusal for ``link``."""
        _refuse(self.framework, link.label, reason, self.supported)

    def add(self, link: Link, layer: dict[str, Any], tensors: dict[str, torch.Tensor | None] | None = None) -> str:
        """Append spec ``layer`` (type and keys) made from ``link``, taking ``tensors`` (its state-dict names); returns its name.

        Raises:
            InteropError: the layer does not accept the current shape (rank, channels, fit).
        """
        record = LAYER_TYPES[layer["type"]]
        self._counts[record.name] = self._counts.get(record.name, 0) + 1
        name = f"{record.name}{self._counts[record.name]}"
        full: dict[str, Any] = {"type": record.name, "name": name}
        try:
            for key, spec_field in record.fields.items():
                full[key] = spec_field.check(layer.get(key, spec_field.default), f"{key}")
            record.check_input(full, self.shape)
            out = record.output_shape(full, self.shape)
        except SpecError as exc:
            self.refuse(link, f"as our {record.name} on input {list(self.shape)}: {exc}")
        self.layers.append(full)
        for key, tensor in (tensors or {}).items():
            if tensor is not None:
                self.tensors[f"layers.{name}.{key}"] = tensor
        self.sources[name] = link.path
        self.shape = out
        return name

    def add_neuron(
        self, link: Link, settings: dict[str, Any], per_channel: dict[str, torch.Tensor] | None = None
    ) -> str:
        """Append a ``lif`` layer with neuron ``settings`` (keys of the spec's ``neuron``) and per-channel values ``[C]``."""
        per_channel = per_channel or {}
        name = self.add(link, {"type": "lif", "per_channel": sorted(per_channel)})
        channel_shape = (self.shape[0], 1, 1) if len(self.shape) == 3 else (self.shape[0],)
        for key, values in per_channel.items():
            self.tensors[f"layers.{name}.{key}"] = values.to(torch.float32).reshape(channel_shape)
        self._neurons[name] = _Neuron({k: v for k, v in settings.items() if k not in per_channel}, per_channel)
        return name

    def spec(
        self, name: str, num_classes: int | None, mean: list[float], std: list[float], input_shape: Shape
    ) -> dict[str, Any]:
        """The normalized spec: the first neuron's settings as the spec's ``neuron``, each layer overriding what differs.

        Raises:
            InteropError: the chain does not end in ``[num_classes]`` features.
        """
        if len(self.shape) != 1 or self.shape[0] < 2 or (num_classes is not None and self.shape[0] != num_classes):
            wanted = f"[{num_classes}]" if num_classes is not None else "[num_classes] features (at least 2)"
            raise InteropError(
                f"cannot import the {self.framework} network: it outputs per-sample shape {list(self.shape)}, expected {wanted}; "
                "end it with a Linear layer (or a 1x1 convolution, AdaptiveAvgPool2d(1) and Flatten)"
            )
        neurons = list(self._neurons.values())
        base = dict(DEFAULT_NEURON)
        if neurons:
            base.update(neurons[0].settings)
        layers = []
        for layer in self.layers:
            layer = dict(layer)
            if layer["type"] == "lif":
                settings = self._neurons[layer["name"]].settings
                layer["neuron"] = {k: v for k, v in settings.items() if base.get(k) != v}
            layers.append(layer)
        raw = {
            "name": name,
            "input": {"shape": list(input_shape), "mean": mean, "std": std},
            "num_classes": self.shape[0],
            "neuron": base,
            "layers": layers,
        }
        try:
            return normalize_spec(raw)
        except SpecError as exc:
            raise InteropError(f"cannot import the {self.framework} network: {exc}") from None

    def build(self, spec: dict[str, Any], timesteps: int, metadata: dict[str, Any]) -> SpikingNet:
        """The network of ``spec`` with every collected tensor copied in, in eval mode; ``metadata`` set on it.

        Raises:
            InteropError: a source tensor's shape differs from the layer's (a module changed after construction).
        """
        if type(timesteps) is not int or timesteps < 1:
            raise InteropError(
                f"cannot import the {self.framework} network: timesteps must be an integer >= 1, got {timesteps!r}"
            )
        model = SpikingNet(spec, timesteps)
        state = model.state_dict()
        with torch.no_grad():
            for key, tensor in self.tensors.items():
                target = state[key]
                source = tensor.detach()
                if tuple(source.shape) != tuple(target.shape):
                    layer = key.split(".")[1]
                    raise InteropError(
                        f"cannot import the {self.framework} network: module {self.sources[layer]}: tensor {key.rsplit('.', 1)[1]} "
                        f"has shape {list(source.shape)}, its layer needs {list(target.shape)}"
                    )
                target.copy_(source.to("cpu", target.dtype))
        model.metadata = {**metadata, "layers": dict(self.sources)}
        return model.eval()
