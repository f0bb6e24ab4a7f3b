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
LSTM neurons; in an ``nn.Sequential``, ``init_hidden=False`` and ``output=True`` before the
last module (a traced model class may have both: :mod:`.trace` checks how its ``forward()``
passes the membrane and the spikes); ``inhibition``; ``state_quant``;
``graded_spikes_factor`` other than 1;
``reset_mechanism="subtract"`` with ``reset_delay=False`` (snnTorch 1.0 then
decides a spike on :math:`U_t - R_t\theta` while it keeps :math:`U_t`, a rule no
albsnn neuron computes); a spike function that is not ``1[x > 0]``; a
``beta``/``threshold`` that varies over positions; anything else not listed in
:data:`SUPPORTED`.

Everything else (walking the chain, the stateless layers, building and checking
the model) is the shared :func:`~.chain.import_chain`; this module holds only
snnTorch's table (:func:`snntorch_framework`) and its ``Leaky`` mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from albsnn_compress.errors import InteropError
from albsnn_compress.interop.chain import (
    ChainBuilder,
    Framework,
    ImportOptions,
    Link,
    channel_values,
    step_mismatch,
)
from albsnn_compress.interop.torch_layers import TORCH_KINDS, TORCH_SUPPORTED
from albsnn_compress.interop.trace import import_model
from albsnn_compress.snn.spec import SpikingNet

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = ["from_snntorch", "snntorch_framework", "SUPPORTED", "IF_TAU"]

FRAMEWORK = "snnTorch"
SUPPORTED = (
    f"nn.Sequential of {TORCH_SUPPORTED}, snn.Leaky (init_hidden=True); or a model class whose forward() runs "
    "one chain of them per time step (snn.Leaky with init_hidden=False too)"
)
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
_RESETS = {"subtract": "soft_deferred", "zero": "hard", "none": "none"}
"""snnTorch's reset rule -> ours."""


class _Leaky(Protocol):
    """What the importer reads of an ``snn.Leaky`` (snnTorch ships no type information)."""

    init_hidden: bool
    inhibition: bool
    state_quant: object  # False, or a function applied to the membrane
    output: bool
    graded_spikes_factor: float | torch.Tensor
    spike_grad: Callable[[torch.Tensor], object]
    beta: float | torch.Tensor
    threshold: float | torch.Tensor


def _reset_rule(builder: ChainBuilder, link: Link, leaky: _Leaky, snn: ModuleType) -> str:
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
            f"reset_mechanism_val {stored!r} disagrees with its {rule!r} state function "
            "(a state dict from another neuron?)",
        )
    return rule


def _channel_setting(
    builder: ChainBuilder, link: Link, label: str, raw: float | torch.Tensor, value: object
) -> float | torch.Tensor:
    """``value`` (the neuron's ``label``, read as ``raw``) as one number or one per channel ``[C]``, or a refusal."""
    values = channel_values(value, builder.shape)
    if values is None:
        builder.refuse(
            link,
            f"{label} of shape {list(torch.as_tensor(raw).shape)} varies over positions on membrane "
            f"{list(builder.shape)}; only one value, or one per channel ([C, 1, 1] after a convolution, [C] after "
            "Linear), maps",
        )
    if not bool(torch.isfinite(torch.as_tensor(values)).all()):
        builder.refuse(link, f"{label} is not finite")
    return values


def _leaky(builder: ChainBuilder, link: Link, last: bool, snn: ModuleType) -> None:
    """Add the ``lif`` layer of an ``snn.Leaky``, or refuse what has no exact form."""
    leaky = cast(_Leaky, link.module)  # the chain checked type(link.module) is snn.Leaky
    if not leaky.init_hidden and not link.traced:  # a traced forward() checked how the membrane is passed
        builder.refuse(
            link,
            "init_hidden=False: in an nn.Sequential each neuron must keep its own state; "
            "build it with init_hidden=True, or import the model class whose forward() passes mem",
        )
    if leaky.inhibition:
        builder.refuse(link, "inhibition=True (winner-take-all across neurons) has no albsnn form")
    if leaky.state_quant:
        builder.refuse(link, "state_quant quantizes the membrane, which no albsnn neuron does")
    if leaky.output and not last and not link.traced:  # a traced forward() passes on the spikes only
        builder.refuse(link, "output=True returns (spikes, membrane), which only the last module may do")
    graded = torch.as_tensor(leaky.graded_spikes_factor).detach()
    if not bool((graded == 1).all()):
        builder.refuse(link, f"graded_spikes_factor {graded.tolist()} (only 1, binary spikes, maps)")
    problem = step_mismatch(leaky.spike_grad, strict=True)
    if problem is not None:
        builder.refuse(link, f"its spike_grad does not compute the step 1[x > 0] in the forward pass ({problem})")
    rule = _reset_rule(builder, link, leaky, snn)
    beta = _channel_setting(builder, link, "beta", leaky.beta, torch.as_tensor(leaky.beta).detach().clamp(0, 1))
    threshold = _channel_setting(builder, link, "threshold", leaky.threshold, leaky.threshold)
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
        "reset": _RESETS[rule],
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


def _reset(net: nn.Module, snn: ModuleType) -> None:
    """Every ``Leaky`` of ``net`` at rest, as ``utils.reset`` leaves it (which resets snnTorch's global list of
    neurons, not the modules of one network)."""
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            reset = getattr(module, "reset_mem", None)
            if callable(reset):
                reset()


def _refused_neuron(kind: type[nn.Module]) -> str | None:
    """Why one of snnTorch's other neuron models is refused."""
    return _REFUSED_NEURONS.get(kind.__name__) if kind.__module__.startswith("snntorch") else None


def snntorch_framework() -> Framework:
    """snnTorch's table for :func:`~.chain.import_chain` (torch layers and ``snn.Leaky`` in ``nn.Sequential``).

    Raises:
        InteropError: snnTorch is not installed.
    """
    try:
        import snntorch as snn
    except ImportError as exc:  # an optional dependency: say what to install
        raise InteropError(
            f"importing an snnTorch network needs snntorch ({exc}); pip install 'albsnn-compress[interop]'"
        ) from exc
    return Framework(
        name=FRAMEWORK,
        package="snntorch",
        supported=SUPPORTED,
        containers=(nn.Sequential,),
        layers=TORCH_KINDS,
        neurons=(snn.Leaky,),
        map_neuron=lambda builder, link, last: _leaky(builder, link, last, snn),
        refusal=_refused_neuron,
        reset=lambda net: _reset(net, snn),
    )


def from_snntorch(
    net: nn.Module, input_shape: Sequence[int], timesteps: int | None = None, **options: Unpack[ImportOptions]
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what snnTorch network ``net`` computes with direct input encoding.

    ``net`` is an ``nn.Sequential`` (nested ones are opened) of the modules in
    :data:`SUPPORTED`, in any mode (batch norms are read, not run), run the snnTorch way:
    ``utils.reset(net)``, then ``net(x)`` with the same image ``x`` at each of ``timesteps``
    steps; ``net`` is not modified. The other arguments (``input_shape`` ``(C, H, W)`` or ``(F,)``, and the
    keywords of :class:`~albsnn_compress.interop.chain.ImportOptions`), the model returned and
    the refusals are those of :func:`~albsnn_compress.interop.chain.import_chain`.

    ``net`` may also be a model class with its own ``forward()`` looping over time, as snnTorch's
    tutorials write them (``mem = lif.init_leaky()``, ``spk, mem = lif(cur, mem)``, ``return
    torch.stack(spk_rec), torch.stack(mem_rec)``): :func:`~albsnn_compress.interop.trace.import_traced`
    traces it, and ``timesteps`` may be left out (the loop has its own).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snn.Leaky(0.9, init_hidden=True), nn.Linear(32, 10))
        >>> model = from_snntorch(net, input_shape=(1, 8, 8), timesteps=4)   # doctest: +SKIP
    """
    return import_model(net, snntorch_framework(), input_shape, timesteps, **options)
