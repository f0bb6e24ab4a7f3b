r"""Import an snnTorch ``nn.Sequential`` network as a :class:`SpikingNet` that computes the same thing.

snnTorch's ``Leaky`` neuron (1.0), per step, with :math:`\beta` clamped to ``[0, 1]``:

.. math::

    U_t = \beta U_{t-1} + X_t - R_t\,\theta, \qquad S_t = 1[U_t > \theta], \qquad
    R_t = 1[U_{t-1} > \theta] = S_{t-1}

(``reset_mechanism="subtract"`` with ``reset_delay=True``, its defaults: the
subtraction of a spike is applied to the *next* step, after its decay;
``"zero"`` multiplies :math:`U_{t-1}` by :math:`1 - R_t` before the decay;
``"none"`` drops the reset term) and :math:`U_0 = 0`. Our LIF without input
decay computes :math:`H_t = V_{t-1} - V_{t-1}/\tau + X_t`, equal to
:math:`\beta V_{t-1} + X_t` for :math:`\tau = 1/(1-\beta)`. So each ``Leaky``
becomes a ``lif`` layer with

=========================== ===================================================================
snnTorch                    albsnn neuron settings
=========================== ===================================================================
``beta`` < 1                ``decay_input=False``, ``tau = 1/(1 - beta)`` (``beta = 0``: ``tau = 1``)
``beta`` = 1                ``leak=False`` (IF)
per-channel ``beta``        ``per_channel: ["tau"]``; a channel with ``beta = 1`` gets ``tau = 2**40``,
                            which leaves every float32 membrane unchanged (IF exactly)
``threshold``               ``v_threshold`` (per channel when it varies with the channel),
                            ``strict_threshold=True`` (fires on ``U > threshold``)
``subtract``                ``reset="soft_deferred"``
``zero``                    ``reset="hard"``, ``v_reset=0`` (with either ``reset_delay``)
``none``                    ``reset="none"``
=========================== ===================================================================

The membrane starts at 0 (``v_reset=0``) as snnTorch's does after
``utils.reset(net)``. The imported network's output is the time-mean of the
last module's per-step output: the spikes of a final ``Leaky(output=True)``
(its spike count / T, the argmax snnTorch's ``accuracy_rate`` takes) or the
values of a final ``Linear``. The surrogate gradient (backward only, used when
compressing finetunes) is ours, ``arctan`` with ``alpha=2``: the same as
snnTorch's default ``atan()``.

Refused, with the reason: ``Synaptic``, ``Alpha``, ``Lapicque``, recurrent and
LSTM neurons; ``init_hidden=False``; ``inhibition``; ``state_quant``;
``graded_spikes_factor`` other than 1; ``output=True`` before the last module;
``reset_mechanism="subtract"`` with ``reset_delay=False`` (snnTorch 1.0 then
decides a spike on :math:`U_t - R_t\theta` while it keeps :math:`U_t`, a rule no
albsnn neuron computes); a spike function that is not ``1[x > 0]``; a
``beta``/``threshold`` that varies over positions; anything else not listed in
:data:`SUPPORTED`.
"""

from __future__ import annotations

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
    channel_values,
    check_heaviside,
    check_input_shape,
    input_stats,
    package_version,
)
from albsnn_compress.interop.torch_layers import TORCH_KINDS, TORCH_SUPPORTED, add_torch_layer
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["from_snntorch", "SUPPORTED", "IF_TAU"]

FRAMEWORK = "snnTorch"
SUPPORTED = f"nn.Sequential of {TORCH_SUPPORTED}, snn.Leaky (init_hidden=True)"
IF_TAU = 2.0**40
"""The time constant of a per-channel ``beta = 1`` channel: ``v - v / IF_TAU`` rounds to ``v`` in float32."""

_REFUSED_NEURONS = {
    "Synaptic": "a second-order neuron (synaptic current and membrane); only Leaky maps",
    "Alpha": "a second-order neuron (two synaptic currents); only Leaky maps",
    "Lapicque": "an RC neuron with its own time-step algebra; only Leaky maps",
    "RLeaky": "a recurrent neuron (its spikes feed back through a weight); only Leaky maps",
    "RSynaptic": "a recurrent second-order neuron; only Leaky maps",
    "SLSTM": "a spiking LSTM; only Leaky maps",
    "SConv2dLSTM": "a spiking convolutional LSTM; only Leaky maps",
    "LeakyParallel": "an RNN-based parallel neuron; only Leaky maps",
}


def _snntorch() -> ModuleType:
    try:
        import snntorch
    except ImportError as exc:
        raise InteropError(
            f"importing an snnTorch network needs snntorch ({exc}); pip install 'albsnn-compress[interop]'"
        ) from None
    return snntorch


def _reset_rule(builder: ChainBuilder, link: Link, leaky: nn.Module, snn: ModuleType) -> str:
    """``subtract``, ``zero`` or ``none``: what the neuron's forward actually runs (its bound state function)."""
    functions = {snn.Leaky._base_sub: "subtract", snn.Leaky._base_zero: "zero", snn.Leaky._base_int: "none"}
    state_function = getattr(getattr(leaky, "state_function", None), "__func__", None)
    if state_function not in functions:
        builder.refuse(link, "its state function is not one of Leaky's subtract/zero/none rules")
    rule = functions[state_function]
    stored = getattr(leaky, "reset_mechanism_val", None)
    if not getattr(leaky, "reset_delay", True) and (
        stored is None or int(stored) != snn.SpikingNeuron.reset_dict[rule]
    ):
        builder.refuse(
            link,
            f"reset_mechanism_val {stored!r} disagrees with its {rule!r} state function (a state dict from another neuron?)",
        )
    return rule


def _leaky(builder: ChainBuilder, link: Link, leaky: nn.Module, last: bool, snn: ModuleType) -> None:
    if not leaky.init_hidden:
        builder.refuse(
            link,
            "init_hidden=False: in an nn.Sequential each neuron must keep its own state; build it with init_hidden=True",
        )
    if leaky.inhibition:
        builder.refuse(link, "inhibition=True (winner-take-all across neurons) has no albsnn form")
    if leaky.state_quant:
        builder.refuse(link, "state_quant quantizes the membrane, which no albsnn neuron does")
    if leaky.output and not last:
        builder.refuse(link, "output=True returns (spikes, membrane), which only the last module may do")
    graded = torch.as_tensor(leaky.graded_spikes_factor).detach()
    if not bool((graded == 1).all()):
        builder.refuse(link, f"graded_spikes_factor {graded.tolist()} (only 1, binary spikes, maps)")
    if not check_heaviside(leaky.spike_grad, strict=True):
        builder.refuse(link, "its spike_grad does not compute the step 1[x > 0] in the forward pass")
    rule = _reset_rule(builder, link, leaky, snn)
    beta = channel_values(torch.as_tensor(leaky.beta).detach().clamp(0, 1), builder.shape)
    threshold = channel_values(leaky.threshold, builder.shape)
    for label, value in (("beta", beta), ("threshold", threshold)):
        if value is None:
            builder.refuse(
                link,
                f"{label} of shape {list(torch.as_tensor(getattr(leaky, label)).shape)} varies over positions on membrane "
                f"{list(builder.shape)}; only one value, or one per channel ([C, 1, 1] after a convolution, [C] after Linear), maps",
            )
        values = torch.as_tensor(value)
        if not bool(torch.isfinite(values).all()):
            builder.refuse(link, f"{label} is not finite")
    delayed = bool(getattr(leaky, "reset_delay", True))
    if rule == "subtract" and not delayed:
        builder.refuse(
            link,
            "reset_mechanism='subtract' with reset_delay=False: snnTorch then fires on U - R*threshold but keeps U, "
            "which no albsnn neuron computes; train with reset_delay=True (the default)",
        )
    if rule == "zero" and not delayed and bool((torch.as_tensor(threshold) < 0).any()):
        builder.refuse(
            link,
            "reset_mechanism='zero' with reset_delay=False and a negative threshold keeps resetting; no exact form",
        )
    settings: dict[str, Any] = {
        "v_reset": 0.0,
        "detach_reset": True,
        "decay_input": False,
        "strict_threshold": True,
        "reset": {"subtract": "soft_deferred", "zero": "hard", "none": "none"}[rule],
    }
    per_channel: dict[str, torch.Tensor] = {}
    if isinstance(beta, float):
        settings.update({"leak": False} if beta == 1.0 else {"leak": True, "tau": 1.0 / (1.0 - beta)})
    else:
        settings["leak"] = True
        per_channel["tau"] = torch.where(beta >= 1, torch.full_like(beta, IF_TAU), 1.0 / (1.0 - beta))
    if isinstance(threshold, float):
        settings["v_threshold"] = threshold
    else:
        per_channel["v_threshold"] = threshold
    builder.add_neuron(link, settings, per_channel)


def from_snntorch(
    net: nn.Module,
    input_shape: Sequence[int],
    timesteps: int,
    *,
    num_classes: int | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    name: str = "snntorch-import",
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what snnTorch network ``net`` computes with direct input encoding.

    ``net`` is an ``nn.Sequential`` (nested ones are opened) of the modules in
    :data:`SUPPORTED`, run the snnTorch way: ``utils.reset(net)``, then ``net(x)`` with
    the same image ``x`` at each of ``timesteps`` steps. Its tensors are copied
    unchanged and batch norms keep their running statistics; ``net`` is not modified.

    Args:
        net: the snnTorch network (trained; any mode: batch norms are read, not run).
        input_shape: ``(C, H, W)`` of one image.
        timesteps: steps per image of the imported network.
        num_classes: checked against the last layer's width if given.
        mean: per-channel mean the imported network subtracts from its ``[0, 1]`` input
            (``transforms.Normalize``'s ``mean`` if you trained on normalized images); default 0.
        std: per-channel divisor, likewise; default 1.
        name: the spec's name.

    Returns:
        The network in eval mode; ``model.metadata["layers"]`` maps each of its layers to the
        source module's path.

    Raises:
        InteropError: before anything is built, naming the first module (path and type) that
            has no exact albsnn form and listing what is supported.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snn.Leaky(0.9, init_hidden=True), nn.Linear(32, 10))
        >>> model = from_snntorch(net, input_shape=(1, 8, 8), timesteps=4)   # doctest: +SKIP
    """
    snn = _snntorch()
    shape = check_input_shape(input_shape, FRAMEWORK)
    means = input_stats(mean, shape[0], 0.0, "mean", FRAMEWORK)
    stds = input_stats(std, shape[0], 1.0, "std", FRAMEWORK)
    links = chain_of(net, FRAMEWORK, (nn.Sequential,), SUPPORTED)
    builder = ChainBuilder(FRAMEWORK, SUPPORTED, shape)
    index = 0
    while index < len(links):
        link = links[index]
        kind = type(link.module)
        if kind is snn.Leaky:
            _leaky(builder, link, link.module, index == len(links) - 1, snn)
            index += 1
        elif kind in TORCH_KINDS:
            index += add_torch_layer(builder, links, index, TORCH_KINDS)
        elif kind.__name__ in _REFUSED_NEURONS and kind.__module__.startswith("snntorch"):
            builder.refuse(link, _REFUSED_NEURONS[kind.__name__])
        elif isinstance(link.module, (snn.Leaky, *TORCH_KINDS)):
            parent = next(cls for cls in kind.__mro__[1:] if cls in (snn.Leaky, *TORCH_KINDS))
            builder.refuse(
                link, f"a subclass of {parent.__name__} may change its forward; only {parent.__name__} itself maps"
            )
        else:
            builder.refuse(link, "no albsnn layer computes it")
    spec = builder.spec(name, num_classes, means, stds, shape)
    source = {"framework": "snntorch", "version": package_version("snntorch")}
    return builder.build(spec, timesteps, {"source": source})
