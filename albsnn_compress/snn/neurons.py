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
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.fields import Field, at_least_one, boolean, finite_float, positive_float
from albsnn_compress.snn.surrogate import Surrogate, make_surrogate

if TYPE_CHECKING:
    from albsnn_compress.snn.onnx_mapping import GraphEmitter

__all__ = ["LIF", "RESETS", "ResetMode", "RESET_MODES", "NEURON_FIELDS", "DEFAULT_NEURON", "PER_CHANNEL",
           "normalize_neuron", "neuron_constant"]


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
    return h * (1.0 - spike) + neuron.v_reset * spike


def _soft_reset(neuron: LIF, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
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
        raise SpecError(f"{where}: {exc}") from None
    except (TypeError, ValueError):
        raise SpecError(f"{where} must be a surrogate name or {{'name': ..., ...}}, got {value!r}") from None
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
            raise SpecError(f"LIF per_channel must list settings among {list(PER_CHANNEL)} and give channel_shape, got {list(per_channel)}")
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
                self.register_buffer(name, torch.full(tuple(channel_shape), value))
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
            return x / self.tau + self.v_reset if self.leak and self.decay_input else x + self.v_reset
        if not self.leak:
            return v + x
        if self.decay_input:
            return v + (x - (v - self.v_reset)) / self.tau
        return v - (v - self.v_reset) / self.tau + x

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Spikes (0/1) where the charged membrane reaches (or, strict, exceeds) the threshold."""
        margin = h - self.v_threshold
        spike = self.surrogate(margin)
        if self.strict_threshold:  # H == v_th does not fire; the surrogate gradient is unchanged
            spike = spike - (margin == 0).to(spike.dtype)
        return spike

    def reset_membrane(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """The reset rule applied to ``h`` with ``spike`` (detached if ``detach_reset``)."""
        if self.detach_reset:
            spike = spike.detach()
        return RESET_MODES[self.reset].update(self, h, spike)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects time-major [T, B, ...] input, got shape {tuple(x.shape)}")
        deferred = RESET_MODES[self.reset].deferred
        steps = x.shape[0]
        spikes: list[torch.Tensor] = []
        v: torch.Tensor | None = None
        for t in range(steps):
            h = self.charge(v, x[t])
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
