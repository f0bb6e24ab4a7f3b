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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn

from albsnn_compress.errors import InteropError
from albsnn_compress.interop.chain import (
    ChainBuilder,
    Link,
    chain_of,
    check_heaviside,
    check_input_shape,
    input_stats,
    package_version,
)
from albsnn_compress.interop.torch_layers import TORCH_KINDS, TORCH_SUPPORTED, add_torch_layer
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["from_spikingjelly", "SUPPORTED"]

FRAMEWORK = "SpikingJelly"
SUPPORTED = (
    "nn.Sequential (step_mode 'm' or 's') of neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode, "
    "layer.Conv2d/Linear/BatchNorm1d/BatchNorm2d/AvgPool2d/MaxPool2d/AdaptiveAvgPool2d/Flatten/Dropout, "
    f"and layer.SeqToANNContainer of torch.nn {TORCH_SUPPORTED}"
)
_POINTWISE = ("linear", "skip")  # plain torch kinds that act the same on [T, B, ...] as on [B, ...]


def _spikingjelly() -> tuple[ModuleType, ModuleType]:
    try:
        from spikingjelly.activation_based import layer, neuron
    except ImportError as exc:
        raise InteropError(
            f"importing a SpikingJelly network needs spikingjelly ({exc}); "
            "pip install --no-deps spikingjelly loguru tqdm (its metadata would replace torch)"
        ) from None
    return layer, neuron


def _sj_kinds(layer: ModuleType) -> dict[type[nn.Module], str]:
    names = {
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
    return {getattr(layer, name): kind for name, kind in names.items() if hasattr(layer, name)}


def _number(builder: ChainBuilder, link: Link, value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if type(value) not in (int, float) or not math.isfinite(value):
        builder.refuse(link, f"{what} {value!r} is not one finite number")
    return float(value)


def _neuron(builder: ChainBuilder, link: Link, node: nn.Module, neuron: ModuleType) -> None:
    if getattr(node, "_neuron_precision", None) is not None:
        builder.refuse(link, f"a reduced-precision neuron state {node._neuron_precision!r} (only float32 maps)")
    if not check_heaviside(node.surrogate_function, strict=False):
        builder.refuse(link, "its surrogate_function does not compute the step 1[x >= 0] forward (spiking=False?)")
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
        tau = _number(builder, link, node.tau, "tau")
        if tau < 1:
            builder.refuse(link, f"tau {tau} < 1 (the membrane would overshoot); only tau >= 1 maps")
        settings.update(leak=True, tau=tau, decay_input=bool(node.decay_input))
    else:  # ParametricLIFNode
        w = node.w.detach()
        if w.numel() != 1:
            builder.refuse(link, f"w of shape {list(w.shape)}: one time constant per neuron; only one per layer maps")
        rate = float(w.reshape(()).float().sigmoid())
        if rate == 0.0:
            builder.refuse(link, f"w = {float(w)} makes sigmoid(w) = 0 in float32 (an infinite time constant)")
        settings.update(leak=True, tau=1.0 / rate, decay_input=bool(node.decay_input))
    builder.add_neuron(link, settings)


def _step_mode(links: list[Link], layer: ModuleType) -> str:
    """``'m'`` or ``'s'``: the first SpikingJelly module's mode (a SeqToANNContainer means ``'m'``)."""
    for link in links:
        if layer.SeqToANNContainer in link.within:
            return "m"
        mode = getattr(link.module, "step_mode", None)
        if mode in ("s", "m"):
            return mode
    return "s"


def _check_placement(
    builder: ChainBuilder, link: Link, mode: str, kinds: dict[type[nn.Module], str], layer: ModuleType
) -> None:
    """Refuse a module that would not see what it sees in our network (its step mode, or [T, B] unfolded)."""
    folded = layer.SeqToANNContainer in link.within
    own_mode = getattr(link.module, "step_mode", None)
    if folded:
        if mode != "m":
            builder.refuse(link, "it sits in a SeqToANNContainer (multi-step) while the network runs step_mode 's'")
        if own_mode not in (None, "s"):
            builder.refuse(link, f"step_mode {own_mode!r} inside SeqToANNContainer (which needs 's')")
        return
    if own_mode is not None and own_mode != mode:
        builder.refuse(
            link,
            f"step_mode {own_mode!r} while the network runs {mode!r}; set one mode with functional.set_step_mode(net, 'm')",
        )
    if own_mode is None and mode == "m" and kinds.get(type(link.module)) not in _POINTWISE:
        builder.refuse(
            link, "a plain torch layer in a multi-step network sees [T, B, ...]; wrap it in layer.SeqToANNContainer"
        )


def from_spikingjelly(
    net: nn.Module,
    input_shape: Sequence[int],
    timesteps: int,
    *,
    num_classes: int | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    name: str = "spikingjelly-import",
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what SpikingJelly network ``net`` computes with direct input encoding.

    ``net`` is an ``nn.Sequential`` of the modules in :data:`SUPPORTED`, run the
    SpikingJelly way: ``functional.reset_net(net)``, then (``step_mode='m'``)
    ``net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)``, or (``'s'``) ``net(x)`` once
    per step, averaged. Tensors are copied unchanged, neuron settings read from the
    live modules, batch norms keep their running statistics; ``net`` is not modified.

    Args:
        net: the SpikingJelly network.
        input_shape: ``(C, H, W)`` of one image.
        timesteps: steps per image of the imported network.
        num_classes: checked against the last layer's width if given.
        mean: per-channel mean the imported network subtracts from its ``[0, 1]`` input
            (your ``transforms.Normalize`` mean, if you trained on normalized images); default 0.
        std: per-channel divisor, likewise; default 1.
        name: the spec's name.

    Returns:
        The network in eval mode; ``model.metadata["layers"]`` maps each layer to its source module's path.

    Raises:
        InteropError: before anything is built, naming the first module (path and type) that
            has no exact albsnn form and listing what is supported.
    """
    layer, neuron = _spikingjelly()
    shape = check_input_shape(input_shape, FRAMEWORK)
    means = input_stats(mean, shape[0], 0.0, "mean", FRAMEWORK)
    stds = input_stats(std, shape[0], 1.0, "std", FRAMEWORK)
    links = chain_of(net, FRAMEWORK, (nn.Sequential, layer.SeqToANNContainer), SUPPORTED)
    builder = ChainBuilder(FRAMEWORK, SUPPORTED, shape)
    sj_kinds = _sj_kinds(layer)
    kinds = {**TORCH_KINDS, **sj_kinds}
    neurons = (neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode)
    mode = _step_mode(links, layer)
    for link in links:  # every module's kind and placement, before any mapping
        kind = type(link.module)
        if kind in neurons and layer.SeqToANNContainer in link.within:
            builder.refuse(link, "a neuron inside SeqToANNContainer would treat the T steps as T independent samples")
        if kind in neurons or kind in kinds:
            _check_placement(builder, link, mode, kinds, layer)
        elif isinstance(link.module, (*neurons, *kinds)):
            parent = next(cls for cls in kind.__mro__[1:] if cls in (*neurons, *kinds))
            builder.refuse(
                link, f"a subclass of {parent.__name__} may change its forward; only {parent.__name__} itself maps"
            )
        elif kind.__module__.startswith("spikingjelly") and ".neuron" in kind.__module__:
            builder.refuse(link, "this neuron model has no albsnn form; only LIFNode, IFNode and ParametricLIFNode map")
        else:
            builder.refuse(link, "no albsnn layer computes it")
    index = 0
    while index < len(links):
        if type(links[index].module) in neurons:
            _neuron(builder, links[index], links[index].module, neuron)
            index += 1
        else:
            index += add_torch_layer(builder, links, index, kinds)
    spec = builder.spec(name, num_classes, means, stds, shape)
    source = {"framework": "spikingjelly", "version": package_version("spikingjelly"), "step_mode": mode}
    return builder.build(spec, timesteps, {"source": source})
