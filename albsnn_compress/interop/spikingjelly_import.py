r"""Import a SpikingJelly (``activation_based``) ``nn.Sequential`` as a :class:`SpikingNet` computing the same thing.

SpikingJelly's neurons run *charge -> fire -> reset* like ours, with the same
formulas, so each maps setting for setting (SpikingJelly keeps ``tau``,
``v_threshold`` and ``v_reset`` as plain attributes, not in the state dict: they
are read from the live modules):

=============================== =================================================================
SpikingJelly                    albsnn neuron settings
=============================== =================================================================
``LIFNode(tau, decay_input)``   ``tau``, ``decay_input`` (both forms: :math:`H = V + (X - (V - V_r))/\tau`
                                or :math:`H = V - (V - V_r)/\tau + X`)
``IFNode``                      ``leak=False`` (:math:`H = V + X`)
``ParametricLIFNode`` (``w``)   ``tau = 1 / sigmoid(w)`` (SpikingJelly multiplies by ``sigmoid(w)``;
                                we divide by its inverse: equal up to float rounding), ``decay_input``
``v_threshold``                 ``v_threshold``; both fire on :math:`H \ge V_{th}`
``v_reset`` = a number          ``reset="hard"``, ``v_reset`` (the membrane also starts there)
``v_reset=None``                ``reset="soft"``, ``v_reset=0`` (SpikingJelly starts a soft-reset
                                membrane at 0 and decays it towards 0)
``detach_reset``                ``detach_reset`` (gradients only)
=============================== =================================================================

``step_mode='m'`` networks take ``[T, B, ...]``: their stateless layers are
SpikingJelly's ``layer.*`` (multi-step) or plain ``torch.nn`` layers inside
``layer.SeqToANNContainer`` (which folds T into the batch, as ours do).
``step_mode='s'`` networks (called once per step) map the same way. Either way
the imported network's output is the time-mean of the last module's output,
which for SpikingJelly's usual spiking output layer is its firing rate.
The surrogate gradient (backward only, used when compressing finetunes) is
ours, ``arctan`` with ``alpha=2``.

Refused, with the reason: any other neuron (``ParametricLIFNode`` with a
per-neuron ``w``, ``KLIFNode``, ``IzhikevichNode``, ...), a neuron whose
surrogate does not compute the step ``1[x >= 0]`` forward (``spiking=False``),
neurons with a reduced-precision state, containers other than
``nn.Sequential``/``SeqToANNContainer``, mixed step modes, and plain torch layers
that would see ``[T, B, ...]`` unfolded.

Everything else (walking the chain, the stateless layers, building and checking
the model) is the shared :func:`~.chain.import_chain`; this module holds only
SpikingJelly's table (:func:`spikingjelly_framework`), its neuron mapping and its
step-mode rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from albsnn_compress.errors import InteropError
from albsnn_compress.interop.chain import ChainBuilder, Framework, ImportOptions, Link, step_mismatch
from albsnn_compress.interop.torch_layers import TORCH_KINDS, TORCH_SUPPORTED, LayerKind
from albsnn_compress.interop.trace import import_model
from albsnn_compress.snn.spec import SpikingNet

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = ["from_spikingjelly", "spikingjelly_framework", "SUPPORTED"]

FRAMEWORK = "SpikingJelly"
SUPPORTED = (
    "nn.Sequential (step_mode 'm' or 's') of neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode, "
    "layer.Conv2d/Linear/BatchNorm1d/BatchNorm2d/AvgPool2d/MaxPool2d/AdaptiveAvgPool2d/Flatten/Dropout, "
    f"and layer.SeqToANNContainer of torch.nn {TORCH_SUPPORTED}; or a model class whose forward() runs one chain of "
    "them (per step, or multi-step on the input repeated over time)"
)
_POINTWISE = ("linear", "skip")  # plain torch kinds that act the same on [T, B, ...] as on [B, ...]
_LAYERS: dict[str, LayerKind] = {
    "Conv2d": "conv",
    "Linear": "linear",
    "BatchNorm2d": "bn2d",
    "BatchNorm1d": "bn1d",
    "AvgPool2d": "avgpool",
    "MaxPool2d": "maxpool",
    "AdaptiveAvgPool2d": "adaptive",
    "Flatten": "flatten",
    "Dropout": "skip",
    "Dropout2d": "skip",
}
"""SpikingJelly's ``layer.*`` classes (multi-step subclasses of the torch layers) and the mapping each takes."""


class _Node(Protocol):
    """What the importer reads of a SpikingJelly node (SpikingJelly ships no type information)."""

    v_threshold: float | torch.Tensor
    v_reset: float | torch.Tensor | None
    detach_reset: bool
    surrogate_function: Callable[[torch.Tensor], object]


class _LIFNode(_Node, Protocol):
    tau: float | torch.Tensor
    decay_input: bool


class _ParametricLIFNode(_Node, Protocol):
    w: torch.Tensor
    decay_input: bool


def _number(builder: ChainBuilder, link: Link, value: object, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        builder.refuse(link, f"{what} {value!r} is not one finite number")
    return float(value)


def _neuron(builder: ChainBuilder, link: Link, neuron: ModuleType) -> None:
    """Add the ``lif`` layer of an ``IFNode``, ``LIFNode`` or ``ParametricLIFNode``, setting for setting."""
    node = cast(_Node, link.module)  # the chain checked that type(link.module) is one of the three
    precision = getattr(node, "_neuron_precision", None)
    if precision is not None:
        builder.refuse(link, f"a reduced-precision neuron state {precision!r} (only float32 maps)")
    problem = step_mismatch(node.surrogate_function, strict=False)
    if problem is not None:
        builder.refuse(
            link, f"its surrogate_function does not compute the step 1[x >= 0] forward ({problem}; spiking=False?)"
        )
    v_threshold = _number(builder, link, node.v_threshold, "v_threshold")
    soft = node.v_reset is None
    settings: dict[str, Any] = {
        "v_threshold": v_threshold,
        "reset": "soft" if soft else "hard",
        "v_reset": 0.0 if soft else _number(builder, link, node.v_reset, "v_reset"),
        "detach_reset": bool(node.detach_reset),
        "strict_threshold": False,
    }
    if type(node) is neuron.IFNode:
        settings.update(leak=False, decay_input=True)
    elif type(node) is neuron.LIFNode:
        lif = cast(_LIFNode, node)
        tau = _number(builder, link, lif.tau, "tau")
        if tau < 1:
            builder.refuse(link, f"tau {tau} < 1 (the membrane would overshoot); only tau >= 1 maps")
        settings.update(leak=True, tau=tau, decay_input=bool(lif.decay_input))
    else:
        plif = cast(_ParametricLIFNode, node)
        w = plif.w.detach()
        if w.numel() != 1:
            builder.refuse(link, f"w of shape {list(w.shape)}: one time constant per neuron; only one per layer maps")
        rate = float(w.reshape(()).float().sigmoid())
        if rate == 0.0:
            builder.refuse(link, f"w = {float(w)} makes sigmoid(w) = 0 in float32 (an infinite time constant)")
        settings.update(leak=True, tau=1.0 / rate, decay_input=bool(plif.decay_input))
    builder.add_neuron(link, settings)


def _step_mode(links: list[Link], container: type[nn.Module]) -> str:
    """``'m'`` or ``'s'``: the first SpikingJelly module's mode (a SeqToANNContainer means ``'m'``)."""
    for link in links:
        if container in link.within:
            return "m"
        mode = getattr(link.module, "step_mode", None)
        if mode == "s" or mode == "m":
            return str(mode)
    return "s"


def _check_placement(
    builder: ChainBuilder,
    link: Link,
    mode: str,
    kinds: Mapping[type[nn.Module], LayerKind],
    neurons: tuple[type[nn.Module], ...],
    container: type[nn.Module],
) -> None:
    """Refuse a module that would not see what it sees in our network (its step mode, or [T, B] unfolded)."""
    folded = container in link.within
    own_mode = getattr(link.module, "step_mode", None)
    if folded:
        if type(link.module) in neurons:
            builder.refuse(link, "a neuron inside SeqToANNContainer would treat the T steps as T independent samples")
        if mode != "m":
            builder.refuse(link, "it sits in a SeqToANNContainer (multi-step) while the network runs step_mode 's'")
        if own_mode not in (None, "s"):
            builder.refuse(link, f"step_mode {own_mode!r} inside SeqToANNContainer (which needs 's')")
        return
    if own_mode is not None and own_mode != mode:
        builder.refuse(
            link,
            f"step_mode {own_mode!r} while the network runs {mode!r}; "
            "set one mode with functional.set_step_mode(net, 'm')",
        )
    if own_mode is None and mode == "m" and kinds.get(type(link.module)) not in _POINTWISE:
        builder.refuse(
            link, "a plain torch layer in a multi-step network sees [T, B, ...]; wrap it in layer.SeqToANNContainer"
        )


def _other_node(kind: type[nn.Module]) -> str | None:
    """Why one of SpikingJelly's other neuron models is refused."""
    if kind.__module__.startswith("spikingjelly") and ".neuron" in kind.__module__:
        return "this neuron model has no albsnn form; only LIFNode, IFNode and ParametricLIFNode map"
    return None


def spikingjelly_framework() -> Framework:
    """SpikingJelly's table for :func:`~.chain.import_chain` (``activation_based`` nodes and layers).

    Raises:
        InteropError: SpikingJelly is not installed.
    """
    try:
        from spikingjelly.activation_based import functional, layer, neuron
    except ImportError as exc:  # an optional dependency: say what to install, and how
        raise InteropError(
            f"importing a SpikingJelly network needs spikingjelly ({exc}); "
            "pip install --no-deps spikingjelly loguru tqdm (its metadata would replace torch)"
        ) from exc
    container: type[nn.Module] = layer.SeqToANNContainer
    kinds = {**TORCH_KINDS, **{getattr(layer, name): kind for name, kind in _LAYERS.items() if hasattr(layer, name)}}
    neurons: tuple[type[nn.Module], ...] = (neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode)

    def check_chain(builder: ChainBuilder, links: list[Link]) -> dict[str, Any]:
        mode = _step_mode(links, container)
        for link in links:
            _check_placement(builder, link, mode, kinds, neurons, container)
        return {"step_mode": mode}

    return Framework(
        name=FRAMEWORK,
        package="spikingjelly",
        supported=SUPPORTED,
        containers=(nn.Sequential, container),
        layers=kinds,
        neurons=neurons,
        map_neuron=lambda builder, link, _last: _neuron(builder, link, neuron),
        refusal=_other_node,
        check_chain=check_chain,
        reset=functional.reset_net,
    )


def from_spikingjelly(
    net: nn.Module, input_shape: Sequence[int], timesteps: int | None = None, **options: Unpack[ImportOptions]
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what SpikingJelly network ``net`` computes with direct input encoding.

    ``net`` is an ``nn.Sequential`` of the modules in :data:`SUPPORTED`, run the
    SpikingJelly way: ``functional.reset_net(net)``, then (``step_mode='m'``)
    ``net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)``, or (``'s'``) ``net(x)`` once
    per step, averaged; ``model.metadata["source"]["step_mode"]`` records which. Neuron
    settings are read from the live modules (SpikingJelly keeps them out of the state dict).
    ``input_shape``, ``timesteps``, the keyword ``options``
    (:class:`~albsnn_compress.interop.chain.ImportOptions`), the model returned and the refusals
    are as for :func:`~albsnn_compress.interop.chain.import_chain`.

    ``net`` may also be a model class with its own ``forward()``, as SpikingJelly's examples write
    them (``conv_fashion_mnist``'s ``CSNN``: ``self.conv_fc(x.unsqueeze(0).expand(T, ...)).mean(0)``,
    or a loop calling single-step modules): :func:`~albsnn_compress.interop.trace.import_traced`
    traces it, and ``timesteps`` may be left out (the model has its own).
    """
    return import_model(net, spikingjelly_framework(), input_shape, timesteps, **options)
