r"""Leaky integrate-and-fire (LIF) neurons over time-major inputs ``[T, B, ...]``, with their variants.

Each step runs *charge -> fire -> reset* (SpikingJelly's decomposition). The
charge, by the neuron's settings:

.. math::

    H_t = \begin{cases}
        V_{t-1} + \frac{1}{\tau}\bigl(X_t - (V_{t-1} - V_{reset})\bigr) & \text{leak, decay\_input (default)} \\
        V_{t-1} - \frac{1}{\tau}(V_{t-1} - V_{reset}) + X_t & \text{leak, no decay\_input} \\
        V_{t-1} + X_t & \text{no leak (IF)}
    \end{cases}

then :math:`S_t = \Theta(H_t - V_{th})` (``strict_threshold``: :math:`H_t > V_{th}`
instead of :math:`\ge`) and the reset rule (:data:`RESET_MODES`):

.. math::

    V_t = \begin{cases}
        H_t (1 - S_t) + V_{reset} S_t & \text{hard} \\
        H_t - V_{th} S_t & \text{soft (reset by subtraction)} \\
        H_t & \text{none; also soft\_deferred, which subtracts } V_{th} S_t
            \text{ from the next step's } H_{t+1} \text{ instead}
    \end{cases}

with :math:`V_0 = V_{reset}`. ``soft_deferred`` is snnTorch's order (its
subtraction is applied after the next decay, not before it). ``tau`` and
``v_threshold`` may be per channel (buffers of shape ``[C, 1, 1]`` or ``[C]``,
stored with the model's tensors). With ``detach_reset`` the spike used in the
reset carries no gradient. ``Theta`` is the surrogate's Heaviside, so gradients
flow through the surrogate's slope.

The membrane state lives only inside one ``forward`` call: every call starts from
:math:`V_{reset}`, so there is no state to leak between batches and ``reset_state``
is never forgotten.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.fields import Field, at_least_one, boolean, finite_float, positive_float
from albsnn_compress.snn.surrogate import Surrogate, first_spiking_input, make_surrogate

if TYPE_CHECKING:
    from albsnn_compress.snn.onnx_mapping import GraphEmitter

__all__ = [
    "LIF",
    "RESETS",
    "ResetMode",
    "RESET_MODES",
    "NEURON_FIELDS",
    "DEFAULT_NEURON",
    "PER_CHANNEL",
    "normalize_neuron",
    "neuron_constant",
]


@dataclass(frozen=True)
class ResetMode:
    """One neuron variant's reset: the PyTorch update and the same update as ONNX nodes.

    ``update(neuron, h, spike)`` returns the membrane after the spike; ``onnx(graph,
    neuron, h, spike, hint)`` emits nodes computing the same value from the charged
    membrane ``h`` and the boolean spike tensor, and returns its name. A
    ``deferred`` rule leaves the membrane as charged and applies ``update`` to the
    *next* step's charged membrane with this step's spike. A new reset rule is one
    more entry of :data:`RESET_MODES`; the spec, the container and the ONNX export
    then accept it.
    """

    update: Callable[[LIF, torch.Tensor, torch.Tensor], torch.Tensor]
    onnx: Callable[[GraphEmitter, LIF, str, str, str], str]
    deferred: bool = False


def _hard_reset(neuron: LIF, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
    if not spike.requires_grad:  # one pass, Where(S, v_reset, H) as in the ONNX export: equal for finite H
        return h.masked_fill(spike.bool(), neuron.v_reset)
    return h * (1.0 - spike) + neuron.v_reset * spike


def _soft_reset(neuron: LIF, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
    if isinstance(neuron.v_threshold, float):  # one pass; v_th * S is exact, so the same value
        return torch.sub(h, spike, alpha=neuron.v_threshold)
    return h - neuron.v_threshold * spike


def _no_reset(_neuron: LIF, h: torch.Tensor, _spike: torch.Tensor) -> torch.Tensor:
    return h


def _hard_reset_onnx(graph: GraphEmitter, neuron: LIF, h: str, spike: str, hint: str) -> str:
    # Where(S, v_reset, H) equals H * (1 - S) + v_reset * S for finite H
    return graph.node("Where", [spike, graph.const(neuron.v_reset), h], hint)


def _soft_reset_onnx(graph: GraphEmitter, neuron: LIF, h: str, spike: str, hint: str) -> str:
    # Where(S, H - v_th, H) equals H - v_th * S
    lowered = graph.node("Sub", [h, neuron_constant(graph, neuron.v_threshold)], f"{hint}.sub")
    return graph.node("Where", [spike, lowered, h], hint)


def neuron_constant(graph: GraphEmitter, value: float | torch.Tensor) -> str:
    """A neuron setting as a graph constant: a scalar, or a per-channel buffer (stored once however often used)."""
    return graph.const(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)


def _no_reset_onnx(_graph: GraphEmitter, _neuron: LIF, h: str, _spike: str, _hint: str) -> str:
    return h


RESET_MODES: dict[str, ResetMode] = {
    "hard": ResetMode(_hard_reset, _hard_reset_onnx),
    "soft": ResetMode(_soft_reset, _soft_reset_onnx),
    "soft_deferred": ResetMode(_soft_reset, _soft_reset_onnx, deferred=True),
    "none": ResetMode(_no_reset, _no_reset_onnx),
}
"""Reset rules by the name the spec's ``neuron.reset`` uses."""

RESETS = tuple(RESET_MODES)

PER_CHANNEL = ("tau", "v_threshold")
"""Neuron settings that may hold one value per channel."""


def _reset_mode(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in RESET_MODES:
        raise SpecError(f"{where} must be one of {list(RESET_MODES)}, got {value!r}")
    return value


def _surrogate(value: Any, where: str) -> Any:
    """A surrogate name or config; its numeric parameters must be finite and positive."""
    if not isinstance(value, (str, dict)):
        raise SpecError(f"{where} must be a surrogate name or {{'name': ..., ...}}, got a {type(value).__name__}")
    if isinstance(value, dict):
        for key, number in value.items():
            if key != "name":
                positive_float(number, f"{where} {key}")
    try:
        make_surrogate(value)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:  # e.g. an unhashable name, or keys that are not parameter names
        raise SpecError(f"{where} must be a surrogate name or {{'name': ..., ...}}, got {value!r}") from exc
    return copy.deepcopy(value)


NEURON_FIELDS: dict[str, Field] = {
    "tau": Field(2.0, at_least_one),
    "v_threshold": Field(1.0, finite_float),
    "v_reset": Field(0.0, finite_float),
    "reset": Field("hard", _reset_mode),
    "detach_reset": Field(True, boolean),
    "surrogate": Field({"name": "arctan", "alpha": 2.0}, _surrogate),
    "leak": Field(True, boolean),
    "decay_input": Field(True, boolean),
    "strict_threshold": Field(False, boolean),
}
"""The neuron settings: the spec's ``neuron`` object, and the overrides a ``lif`` layer may give."""

DEFAULT_NEURON: dict[str, Any] = {key: value.default for key, value in NEURON_FIELDS.items()}


def normalize_neuron(raw: Any, where: str, *, partial: bool = False) -> dict[str, Any]:
    """Check neuron settings; fill every default unless ``partial`` (a layer's overrides).

    Raises:
        SpecError: an unknown key, or a value that fails its check, named with ``where``.
    """
    if not isinstance(raw, dict) or set(raw) - set(NEURON_FIELDS):
        raise SpecError(f"{where} keys must be among {sorted(NEURON_FIELDS)}, got {raw!r}")
    keys = [key for key in NEURON_FIELDS if key in raw] if partial else list(NEURON_FIELDS)
    return {
        key: NEURON_FIELDS[key].check(raw.get(key, copy.deepcopy(NEURON_FIELDS[key].default)), f"{where} {key}")
        for key in keys
    }


class _MultiStepLIF(torch.autograd.Function):
    """``T > 1`` steps of a LIF with scalar settings and a detached reset, as one autograd node.

    Forward runs the same floating-point operations as :meth:`LIF.charge`,
    :meth:`LIF.fire` and the reset rule, in place into two ``[T, ...]`` tensors
    (the charged membranes ``H_t``, kept for backward, and the spikes returned),
    so no per-step tensor, graph node or final ``torch.stack`` is made. Backward is
    backpropagation through time written out, with the reset's spike detached:

    .. math::

        g_{H_t} = g_{S_t} \\sigma'(H_t - V_{th}) + g_{V_t} \\frac{\\partial V_t}{\\partial H_t},\\quad
        g_{X_t} = g_{H_t} \\frac{\\partial H_t}{\\partial X_t},\\quad
        g_{V_{t-1}} = g_{H_t} \\frac{\\partial H_t}{\\partial V_{t-1}}

    with :math:`\\partial V_t / \\partial H_t = 1 - S_t` (hard) or 1 (the others),
    :math:`\\partial H_t / \\partial X_t = 1/\\tau` (decay_input) or 1, and
    :math:`\\partial H_t / \\partial V_{t-1} = 1 - 1/\\tau` (leak) or 1.

    Only neurons without per-channel settings take this path (:meth:`LIF._multistep_boundaries`),
    so ``tau`` and ``v_threshold`` are floats here.
    """

    # torch leaves Function.apply unannotated; it takes forward's arguments after ctx and returns its value
    apply: ClassVar[Callable[[torch.Tensor, LIF, float, float], torch.Tensor]]

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, neuron: LIF, start: float, center: float) -> torch.Tensor:
        tau, v_th, v_reset = cast(float, neuron.tau), cast(float, neuron.v_threshold), neuron.v_reset  # scalars
        rule = neuron.reset
        spikes = torch.empty_like(x)
        charged = torch.empty_like(x)
        state = torch.empty_like(x[0])  # V_t after the reset, read by the next charge only
        v: torch.Tensor | None = None
        for t in range(x.shape[0]):
            h, x_t = charged[t], x[t]
            if v is None:  # the operations of LIF.charge(None, x)
                if neuron.leak and neuron.decay_input:
                    torch.div(x_t, tau, out=h)
                else:
                    h.copy_(x_t)
                if v_reset != 0.0:
                    h.add_(v_reset)
            elif not neuron.leak:
                torch.add(v, x_t, out=h)
            else:  # v - v_reset is v exactly when v_reset is 0
                rest = v if v_reset == 0.0 else torch.sub(v, v_reset, out=h)
                if neuron.decay_input:  # v + (x - (v - v_reset)) / tau
                    torch.sub(x_t, rest, out=h).div_(tau).add_(v)
                else:  # v - (v - v_reset) / tau + x
                    torch.div(rest, tau, out=h)
                    torch.sub(v, h, out=h).add_(x_t)
            if rule == "soft_deferred" and t:
                h.sub_(spikes[t - 1], alpha=v_th)  # h - v_th * S: the product is exact
            spike = torch.ge(h, start, out=spikes[t])
            if rule == "hard":  # h - h S + v_reset S: exactly h (1 - S) + v_reset S, as S is 0 or 1
                v = torch.addcmul(h, h, spike, value=-1.0, out=state)
                if v_reset != 0.0:
                    v.add_(spike, alpha=v_reset)
            elif rule == "soft":
                v = torch.sub(h, spike, alpha=v_th, out=state)
            else:
                v = h
        ctx.save_for_backward(charged, spikes)
        ctx.neuron, ctx.center = neuron, center
        return spikes

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # with g_X = g_H dH/dX: g_X[t] = dH/dX g_S[t] sigma'_t + (dH/dV) (dV_t/dH_t) g_X[t+1], in place in g_X
        charged, spikes = ctx.saved_tensors
        neuron: LIF = ctx.neuron
        tau = cast(float, neuron.tau)  # a scalar setting, as in forward
        divisor = tau if neuron.leak and neuron.decay_input else None
        state_scale = 1.0 - 1.0 / tau if neuron.leak else 1.0
        grad_x = torch.empty_like(charged)
        for t in range(charged.shape[0] - 1, -1, -1):
            margin = torch.sub(charged[t], ctx.center, out=grad_x[t])
            grad = neuron.surrogate.grad_input(grad_out[t], margin, divisor, scratch=True)
            if t + 1 < charged.shape[0]:
                grad.add_(grad_x[t + 1], alpha=state_scale)
                if neuron.reset == "hard":  # dV_t/dH_t = 1 - S_t
                    grad.addcmul_(grad_x[t + 1], spikes[t], value=-state_scale)
        return grad_x, None, None, None


class LIF(nn.Module):
    """A layer of LIF neurons; input and output are time-major ``[T, B, ...]``.

    Args:
        tau: membrane time constant (> 1 means leaky; 2.0 halves the input at T=1).
        v_threshold: firing threshold.
        v_reset: reset and resting potential.
        reset: a name of :data:`RESET_MODES` (``hard``, ``soft``, ``soft_deferred``, ``none``).
        detach_reset: stop gradients through the spike used in the reset.
        surrogate: surrogate name or config dict, see :mod:`.surrogate`.
        leak: ``False`` makes an integrate-and-fire neuron (``tau`` unused).
        decay_input: the input is scaled by ``1/tau`` too (SpikingJelly's ``decay_input``).
        strict_threshold: fire on ``H > v_th`` (snnTorch) instead of ``H >= v_th``.
        per_channel: settings among :data:`PER_CHANNEL` held per channel, as buffers.
        channel_shape: the per-channel buffers' shape (``[C, 1, 1]`` for maps, ``[C]`` for features).
    """

    tau: float | torch.Tensor
    """A float, or a buffer of ``channel_shape`` when per channel."""
    v_threshold: float | torch.Tensor
    """A float, or a buffer of ``channel_shape`` when per channel."""

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        detach_reset: bool = True,
        surrogate: str | dict[str, Any] = "arctan",
        leak: bool = True,
        decay_input: bool = True,
        strict_threshold: bool = False,
        per_channel: Sequence[str] = (),
        channel_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if reset not in RESET_MODES:
            raise SpecError(f"LIF reset must be one of {list(RESET_MODES)}, got {reset!r}")
        if not tau >= 1.0:
            raise SpecError(f"LIF tau must be >= 1 (1 = no leak), got {tau!r}")
        unknown = [name for name in per_channel if name not in PER_CHANNEL]
        if unknown or (per_channel and not channel_shape):
            raise SpecError(
                f"LIF per_channel must list settings among {list(PER_CHANNEL)} and give channel_shape, "
                f"got {list(per_channel)}"
            )
        self.v_reset = float(v_reset)
        self.reset = reset
        self.detach_reset = bool(detach_reset)
        self.surrogate: Surrogate = make_surrogate(surrogate)
        self.leak = bool(leak)
        self.decay_input = bool(decay_input)
        self.strict_threshold = bool(strict_threshold)
        self.per_channel = tuple(name for name in PER_CHANNEL if name in per_channel)
        self._scalars = {"tau": float(tau), "v_threshold": float(v_threshold)}
        for name, value in self._scalars.items():
            if name in self.per_channel:
                shape = tuple(channel_shape or ())  # never empty: per_channel needs channel_shape (checked above)
                self.register_buffer(name, torch.full(shape, value))
            else:
                setattr(self, name, value)

    def config(self) -> dict[str, Any]:
        """The neuron settings that rebuild this neuron (JSON-able; per-channel values are tensors, not here)."""
        return {
            **self._scalars,
            "v_reset": self.v_reset,
            "reset": self.reset,
            "detach_reset": self.detach_reset,
            "surrogate": self.surrogate.config(),
            "leak": self.leak,
            "decay_input": self.decay_input,
            "strict_threshold": self.strict_threshold,
        }

    def charge(self, v: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """Integration of input ``x`` into membrane ``v`` (``None``: the first step, from ``V_0 = v_reset``)."""
        if v is None:  # H_1 from V_0 = v_reset: the same float result as the general form, fewer ops
            h = x / self.tau if self.leak and self.decay_input else x
            return h + self.v_reset if self.v_reset != 0.0 else h  # + 0 would only turn -0 into +0
        if not self.leak:
            return v + x
        if self.decay_input:
            return v + (x - (v - self.v_reset)) / self.tau
        return v - (v - self.v_reset) / self.tau + x

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Spikes (0/1) where the charged membrane reaches (or, strict, exceeds) the threshold."""
        # strict: H == v_th does not fire; the surrogate gradient is unchanged
        return self.surrogate.fire(h, self.v_threshold, strict=self.strict_threshold)

    def reset_membrane(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """The reset rule applied to ``h`` with ``spike`` (detached if ``detach_reset``)."""
        if self.detach_reset:
            spike = spike.detach()
        return RESET_MODES[self.reset].update(self, h, spike)

    def _multistep_boundaries(self, x: torch.Tensor) -> tuple[float, float] | None:
        """``x*`` of this threshold (strict or not) and of the inclusive one, where :class:`_MultiStepLIF` applies.

        It applies to scalar ``tau`` and ``v_threshold``, a detached reset, and the
        rules it knows, in eager mode; anything else (a dtype without the search, and
        ``torch.compile``) takes the step-by-step loop of :meth:`charge`,
        :meth:`fire` and :meth:`reset_membrane`.
        """
        if self.per_channel or not self.detach_reset or self.reset not in ("hard", "soft", "soft_deferred", "none"):
            return None
        if torch.compiler.is_compiling():  # the loop of plain operations, which inductor fuses
            return None
        start = first_spiking_input(x.dtype, x.device, None, 0.0, self.v_threshold, self.strict_threshold)
        center = first_spiking_input(x.dtype, x.device, None, 0.0, self.v_threshold, False)
        return None if start is None or center is None else (start, center)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects time-major [T, B, ...] input, got shape {tuple(x.shape)}")
        steps = x.shape[0]
        if steps == 1:  # charge from rest and fire in one autograd node; no reset is ever read
            divisor = self.tau if self.leak and self.decay_input else None
            return self.surrogate.fire(
                x, self.v_threshold, strict=self.strict_threshold, divisor=divisor, offset=self.v_reset
            )
        fused = self._multistep_boundaries(x)
        if fused is not None:
            return _MultiStepLIF.apply(x, self, *fused)
        deferred = RESET_MODES[self.reset].deferred
        spikes: list[torch.Tensor] = []
        v: torch.Tensor | None = None
        for t, x_t in enumerate(x.unbind(0)):  # unbind: one gradient stack in backward, not T zero-filled copies
            h = self.charge(v, x_t)
            if deferred and spikes:
                h = self.reset_membrane(h, spikes[-1])
            spike = self.fire(h)
            if t + 1 < steps:  # the membrane after the last step is never read
                v = h if deferred else self.reset_membrane(h, spike)
            spikes.append(spike)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        kind = "IF" if not self.leak else f"tau={self._scalars['tau']}"
        per_channel = f", per_channel={list(self.per_channel)}" if self.per_channel else ""
        return (
            f"{kind}, v_threshold={self._scalars['v_threshold']}, reset={self.reset}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate.name}{per_channel}"
        )
