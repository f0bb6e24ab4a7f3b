"""The one import chain: another framework's ``nn.Sequential`` in, the equivalent :class:`SpikingNet` out.

Both importers (:mod:`.snntorch_import`, :mod:`.spikingjelly_import`) call
:func:`import_chain` with a :class:`Framework`, the table of what is specific to
their framework (its containers, its exact layer and neuron classes, how a neuron
maps, which placements it refuses). The steps are the same for both:

1. the input shape, ``mean`` and ``std`` are checked;
2. :func:`chain_of` flattens nested containers into the list of :class:`Link` s
   (module path, module, the containers it sits in) and refuses anything that is
   not a chain;
3. every module's kind is recognised (exact classes only: a subclass may override
   ``forward``) and the framework's rules over the whole chain run, so a module
   with no exact counterpart is refused before any mapping;
4. a :class:`ChainBuilder` receives one spec layer per source module
   (:func:`~.torch_layers.add_torch_layer` for stateless layers, the framework's
   ``map_neuron`` for neurons), with the source tensors it takes, and advances the
   per-sample shape by the layer types' integer arithmetic, so a wrong channel
   count or a pool that does not fit is refused, named, before anything is allocated;
5. :meth:`ChainBuilder.spec` normalizes the spec and :meth:`ChainBuilder.build`
   builds the network and copies every source tensor into its state dict (shapes
   checked, values unchanged).

Every refusal is one line: the module path, its type, what is wrong and what the
importer supports (:class:`~albsnn_compress.errors.InteropError`).

A model class with its own ``forward()`` takes the same steps 3 to 5 (:func:`map_links`,
:func:`import_links`) on the chain that :mod:`.trace` finds by tracing its ``forward()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import torch
from torch import nn

from albsnn_compress.errors import InteropError, SpecError, one_line
from albsnn_compress.interop.torch_layers import LayerKind, add_torch_layer
from albsnn_compress.snn.layer_types import LAYER_TYPES, Shape
from albsnn_compress.snn.neurons import DEFAULT_NEURON
from albsnn_compress.snn.spec import (
    INPUT_RANKS,
    MAX_INPUT_CHANNELS,
    SpikingNet,
    check_spec_name,
    flat_statistics,
    normalize_spec,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = [
    "Link",
    "ChainBuilder",
    "Framework",
    "ImportOptions",
    "import_chain",
    "import_links",
    "check_kind",
    "checked_options",
    "CheckedOptions",
    "map_links",
    "chain_of",
    "channel_values",
    "step_mismatch",
    "input_stats",
    "check_input_shape",
    "flattened",
    "package_version",
]


@dataclass(frozen=True)
class Link:
    """One module of the chain: its path in the source network (``"3"``, ``"features.1"``), itself, and the types of
    the containers it sits in, outermost first."""

    path: str
    module: nn.Module
    within: tuple[type[nn.Module], ...]
    traced: bool = False
    """Found by tracing a model class's ``forward()`` (:mod:`.trace`), which checked how it is called, and how a
    neuron's state is passed from step to step."""
    call: str | None = None
    """The functional call in ``forward()`` that this link stands for (``F.max_pool2d``); ``module`` is its module
    form."""

    @property
    def label(self) -> str:
        """``module 3 (Conv2d)``, or ``forward(): F.max_pool2d after conv1``: how a message names it."""
        if self.call is not None:
            return self.path
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


def check_input_shape(input_shape: object, framework: str) -> Shape:
    """``(C, H, W)`` (images) or ``(F,)`` (feature vectors) as positive ints, or a refusal."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) not in INPUT_RANKS or any(type(d) is not int or d < 1 for d in shape):
        raise InteropError(
            f"cannot import the {framework} network: input_shape must be three positive integers (C, H, W) or one "
            f"(F,) for feature vectors, got {input_shape!r}"
        )
    return shape


def input_stats(values: object, shape: Shape, default: float, label: str, framework: str) -> list[float]:
    """The spec's ``mean`` or ``std`` for an input of ``shape`` from ``None`` (``default``), one number, or one per
    channel (images: ``C`` numbers) or per feature (a flat input: ``F``); one number stays one for a flat input."""
    size = shape[0]
    if values is None:
        return [default] * (size if len(shape) == 3 else 1)
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        items: list[object] = [values]
    elif isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        items = list(values)
    else:
        items = []
    if len(items) == 1 and len(shape) == 3:
        items = items * size
    numbers = [float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
    counts = (size,) if len(shape) == 3 else (1, size)
    if (
        len(numbers) != len(items)
        or len(numbers) not in counts
        or not all(math.isfinite(v) for v in numbers)
        or (label == "std" and min(numbers) <= 0)
    ):
        wanted = "positive" if label == "std" else "finite"
        per = "per input channel" if len(shape) == 3 else "per feature"
        raise InteropError(
            f"cannot import the {framework} network: {label} must be one or {size} {wanted} numbers "
            f"(one {per}), got {values!r}"
        )
    return numbers


def step_mismatch(fn: Callable[[torch.Tensor], object], strict: bool) -> str | None:
    """``None`` when ``fn(x)`` is the step ``1[x > 0]`` (``strict``) or ``1[x >= 0]``, else how it differs.

    ``fn`` is a framework's spike function, probed on values around 0 (ties and extremes
    included). What it raises is not re-raised: a function that fails on a plain tensor is
    not a step function we can map, and the refusal quotes the error.
    """
    probe = torch.cat(
        [
            torch.tensor([0.0, -0.0, 1e-38, -1e-38, 1e-7, -1e-7, 1.0, -1.0, 3e38, -3e38]),
            torch.linspace(-4, 4, 81),
        ]
    )
    try:
        with torch.no_grad():
            out = fn(probe.clone())
    except Exception as exc:  # noqa: BLE001 - foreign code: any failure is quoted in the refusal
        return f"calling it on a float tensor raised {type(exc).__name__}: {one_line(exc, 120)}"
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        shape = f" of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else ""
        return f"it returns {type(out).__name__}{shape} for {list(probe.shape)} inputs"
    expected = ((probe > 0) if strict else (probe >= 0)).float()
    differ = torch.nonzero(out.float() != expected).flatten()
    if len(differ):
        at = int(differ[0])
        return f"at x = {float(probe[at]):g} it gives {float(out[at]):g}, the step {float(expected[at]):g}"
    return None


def channel_values(value: object, shape: Shape) -> float | torch.Tensor | None:
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
    except RuntimeError:  # the shapes do not broadcast
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

    def add(self, link: Link, layer: dict[str, Any], tensors: Mapping[str, torch.Tensor | None] | None = None) -> str:
        """Append spec ``layer`` (type and keys) made from ``link``, taking ``tensors`` (by state-dict name).

        Returns:
            The layer's name (``conv2``).

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
        except SpecError as exc:  # the source layer's settings or input shape have no spec form
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
        """Append a ``lif`` layer with neuron ``settings`` (keys of the spec's ``neuron``) and values ``[C]``
        per channel."""
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
        """The normalized spec: the first neuron's settings as the spec's ``neuron``, each layer overriding what
        differs.

        Raises:
            InteropError: the chain does not end in ``[num_classes]`` features, or a neuron setting read from
                the source (a threshold, a time constant) has no valid spec value.
        """
        if len(self.shape) != 1 or self.shape[0] < 2 or (num_classes is not None and self.shape[0] != num_classes):
            wanted = f"[{num_classes}]" if num_classes is not None else "[num_classes] features (at least 2)"
            raise InteropError(
                f"cannot import the {self.framework} network: it outputs per-sample shape {list(self.shape)}, "
                f"expected {wanted}; end it with a Linear layer (or a 1x1 convolution, AdaptiveAvgPool2d(1) and "
                "Flatten)"
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
        except SpecError as exc:  # the message names the layer and key; the spec error stays the cause
            raise InteropError(f"cannot import the {self.framework} network: {exc}") from exc

    def build(self, spec: dict[str, Any], timesteps: int, metadata: dict[str, Any]) -> SpikingNet:
        """The network of ``spec`` with every collected tensor copied in, in eval mode; ``metadata`` set on it.

        Raises:
            InteropError: ``timesteps`` is not a positive integer, or a source tensor's shape differs from the
                layer's (a module changed after construction).
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
                    layer, tensor_name = key.split(".")[1], key.rsplit(".", 1)[1]
                    raise InteropError(
                        f"cannot import the {self.framework} network: module {self.sources[layer]}: tensor "
                        f"{tensor_name} has shape {list(source.shape)}, its layer needs {list(target.shape)}"
                    )
                target.copy_(source.to("cpu", target.dtype))
        # nn.Module.__setattr__ is typed for tensors and modules; a plain value lands in __dict__ as here
        object.__setattr__(model, "metadata", {**metadata, "layers": dict(self.sources)})
        return model.eval()


NeuronMapper = Callable[[ChainBuilder, Link, bool], None]
"""``map_neuron(builder, link, last)``: add the ``lif`` layer of neuron ``link`` (``last``: the chain's last module)
to ``builder``, or refuse it."""


def _no_reason(_kind: type[nn.Module]) -> str | None:
    return None


def _no_rules(_builder: ChainBuilder, _links: list[Link]) -> dict[str, Any]:
    return {}


def _no_reset(_net: nn.Module) -> None:
    return None


@dataclass(frozen=True)
class Framework:
    """What :func:`import_chain` needs to know of one framework: how to recognise its modules and map its neurons.

    Attributes:
        name: how messages name it (``snnTorch``).
        package: its distribution name, recorded with its version in the model's metadata (``snntorch``);
            the spec's default name is ``<package>-import``.
        supported: the modules it maps, listed in every refusal.
        containers: the exact container classes that are opened (``nn.Sequential``, ...).
        layers: exact stateless layer classes and the :mod:`.torch_layers` mapping each takes.
        neurons: exact neuron classes, each mapped by ``map_neuron``.
        map_neuron: adds a neuron's ``lif`` layer, or refuses the neuron (:data:`NeuronMapper`).
        refusal: why a module class of none of these kinds is refused, where the framework knows better than
            "no albsnn layer computes it" (another neuron model of the framework); ``None`` where it does not.
        check_chain: the framework's rules over the whole chain, run once every module's kind is known
            (placement, step mode); refuses, or returns what to record with the source in the metadata.
        reset: puts every neuron of a network at rest, as the framework's own reset does (``utils.reset``,
            ``functional.reset_net``); the tracer (:mod:`.trace`) runs a model class's ``forward()`` from rest.
    """

    name: str
    package: str
    supported: str
    containers: tuple[type[nn.Module], ...]
    layers: Mapping[type[nn.Module], LayerKind]
    neurons: tuple[type[nn.Module], ...]
    map_neuron: NeuronMapper
    refusal: Callable[[type[nn.Module]], str | None] = _no_reason
    check_chain: Callable[[ChainBuilder, list[Link]], dict[str, Any]] = _no_rules
    reset: Callable[[nn.Module], None] = _no_reset


class ImportOptions(TypedDict, total=False):
    """The keyword options of :func:`~.from_snntorch` and :func:`~.from_spikingjelly`.

    Attributes:
        num_classes: checked against the last layer's width if given.
        mean: per-channel mean the imported network subtracts from its ``[0, 1]`` input
            (``transforms.Normalize``'s ``mean`` if you trained on normalized images); default 0.
        std: per-channel divisor, likewise; default 1.
        name: the spec's name; default ``snntorch-import`` / ``spikingjelly-import``.
        trace_batch: how many images a model class's ``forward()`` is traced on (:mod:`.trace`); default 2. Give
            the batch size its ``forward()`` hard-codes, if it does (``x.view(batch_size, -1)``).
    """

    num_classes: int | None
    mean: float | Sequence[float] | None
    std: float | Sequence[float] | None
    name: str
    trace_batch: int


def check_kind(builder: ChainBuilder, framework: Framework, link: Link) -> None:
    """Refuse ``link`` unless its exact class is one of the framework's layers or neurons."""
    kind = type(link.module)
    known = (*framework.neurons, *framework.layers)
    if kind in known:
        return
    parent = next((cls for cls in kind.__mro__[1:] if cls in known), None)
    if parent is not None:
        builder.refuse(
            link, f"a subclass of {parent.__name__} may change its forward; only {parent.__name__} itself maps"
        )
    builder.refuse(link, framework.refusal(kind) or "no albsnn layer computes it")


@dataclass(frozen=True)
class CheckedOptions:
    """The arguments every import checks before it looks at a module."""

    name: str
    shape: Shape
    means: list[float]
    stds: list[float]
    num_classes: int | None


def checked_options(framework: Framework, input_shape: object, options: Mapping[str, Any]) -> CheckedOptions:
    """``name``, ``input_shape``, ``mean`` and ``std`` checked (a refusal names the bad one)."""
    name = options.get("name", f"{framework.package}-import")
    try:
        check_spec_name(name, "name")  # a name the spec would refuse is refused now, before any module is mapped
    except SpecError as exc:
        raise InteropError(f"cannot import the {framework.name} network: {exc}") from exc
    shape = check_input_shape(input_shape, framework.name)
    means = input_stats(options.get("mean"), shape, 0.0, "mean", framework.name)
    stds = input_stats(options.get("std"), shape, 1.0, "std", framework.name)
    return CheckedOptions(name, shape, means, stds, options.get("num_classes"))


def flattened(checked: CheckedOptions, framework: Framework) -> CheckedOptions:
    """``checked`` for a network fed its ``[C, H, W]`` images flattened: the input ``[C*H*W]`` and the per-channel
    normalization as the flattened images' (:func:`~albsnn_compress.snn.spec.flat_statistics`).

    Raises:
        InteropError: per-channel statistics that differ, over more features than a spec holds one per feature.
    """
    shape = checked.shape
    if len(shape) == 1:
        return checked
    features = math.prod(shape)
    means, stds = flat_statistics(checked.means, shape), flat_statistics(checked.stds, shape)
    if max(len(means), len(stds)) > MAX_INPUT_CHANNELS:
        raise InteropError(
            f"cannot import the {framework.name} network: it takes its {list(shape)} images flattened to "
            f"{features} features, and its per-channel mean/std would become {features} per-feature values (at most "
            f"{MAX_INPUT_CHANNELS}); normalize outside the network or use one mean and std for all channels"
        )
    return CheckedOptions(checked.name, (features,), means, stds, checked.num_classes)


def map_links(links: list[Link], framework: Framework, shape: Shape) -> tuple[ChainBuilder, dict[str, Any]]:
    """Recognise every link, run the framework's rules, then map each onto a :class:`ChainBuilder`.

    Returns:
        The builder (the spec's layers and the source tensors) and what ``check_chain`` recorded.
    """
    builder = ChainBuilder(framework.name, framework.supported, shape)
    for link in links:  # every module's kind, then the framework's placement rules, before any mapping
        check_kind(builder, framework, link)
    source = framework.check_chain(builder, links)
    index = 0
    while index < len(links):
        if type(links[index].module) in framework.neurons:
            framework.map_neuron(builder, links[index], index == len(links) - 1)
            index += 1
        else:
            index += add_torch_layer(builder, links, index, framework.layers)
    return builder, source


def import_links(
    builder: ChainBuilder, source: dict[str, Any], framework: Framework, checked: CheckedOptions, timesteps: int
) -> SpikingNet:
    """The network of a mapped chain (:func:`map_links`): its spec normalized, built, the source tensors copied in."""
    spec = builder.spec(checked.name, checked.num_classes, checked.means, checked.stds, checked.shape)
    version = package_version(framework.package)
    return builder.build(spec, timesteps, {"source": {"framework": framework.package, "version": version, **source}})


def import_chain(
    net: nn.Module,
    framework: Framework,
    input_shape: Sequence[int],
    timesteps: int | None,
    **options: Unpack[ImportOptions],
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what ``framework``'s network ``net`` computes with direct encoding.

    ``net`` is not modified: its tensors are copied unchanged (batch norms keep their running
    statistics) and neuron settings are read from the live modules. A model class with its own
    ``forward()`` goes through :func:`.trace.import_traced` instead (see :func:`.trace.import_model`).

    Args:
        net: the source network, an ``nn.Sequential`` (nested containers are opened).
        framework: the framework's table.
        input_shape: ``(C, H, W)`` of one image, or ``(F,)`` for feature vectors. A chain whose first layer is a
            ``Linear`` is fed its images flattened: given ``(C, H, W)``, the imported network takes ``[C*H*W]``
            (and runs on the images too, flattening them; ``metadata["source"]["flattened_input"]``).
        timesteps: steps per image of the imported network (an ``nn.Sequential`` has no number of its own).
        **options: :class:`ImportOptions` (``num_classes``, ``mean``, ``std``, ``name``).

    Returns:
        The network in eval mode; ``model.metadata`` holds ``source`` (framework, version, and what
        ``check_chain`` returned) and ``layers`` (each layer's source module path).

    Raises:
        InteropError: before anything is built, naming the first module (path and type) that
            has no exact albsnn form and listing what is supported; or a bad argument.
    """
    checked = checked_options(framework, input_shape, options)
    links = chain_of(net, framework.name, framework.containers, framework.supported)
    if timesteps is None:
        raise InteropError(
            f"cannot import the {framework.name} network: an nn.{type(net).__name__} runs one time step per call and "
            "you loop it yourself: give timesteps (--timesteps T)"
        )
    first = next((link for link in links if framework.layers.get(type(link.module)) != "skip"), None)
    flat = len(checked.shape) == 3 and first is not None and framework.layers.get(type(first.module)) == "linear"
    if flat:  # a chain that starts with a Linear is fed its images flattened (snnTorch's data.view(batch_size, -1))
        checked = flattened(checked, framework)
    builder, source = map_links(links, framework, checked.shape)
    return import_links(
        builder, {**source, **({"flattened_input": True} if flat else {})}, framework, checked, timesteps
    )
