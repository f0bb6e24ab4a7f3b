r"""Leaky integrate-and-fire (LIF) neurons over time-major inputs ``[T, B, ...]``.

Each step runs *charge -> fire -> reset* (SpikingJelly's decomposition):

.. math::

    H_t = V_{t-1} + \frac{1}{\tau}\bigl(X_t - (V_{t-1} - V_{reset})\bigr)

    S_t = \Theta(H_t - V_{th})

    V_t = \begin{cases}
        H_t (1 - S_t) + V_{reset} S_t & \text{hard reset} \\
        H_t - V_{th} S_t & \text{soft reset (reset by subtraction)}
    \end{cases}

with :math:`V_0 = V_{reset}`. With ``detach_reset`` the :math:`S_t` used in the
reset carries no gradient (a common stabiliser). ``Theta`` is the surrogate's
Heaviside, so gradients flow through the surrogate's slope.

The membrane state lives only inside one ``forward`` call: every call starts from
:math:`V_{reset}`, so there is no state to leak between batches and ``reset_state``
is never forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.surrogate import Surrogate, make_surrogate

if TYPE_CHECKING:
    from albsnn_compress.snn.onnx_mapping import GraphEmitter

__all__ = ["LIF", "RESETS", "ResetMode", "RESET_MODES"]


@dataclass(frozen=True)
class ResetMode:
    """One neuron variant's reset: the PyTorch update and the same update as ONNX nodes.

    ``update(neuron, h, spike)`` returns the membrane after the spike; ``onnx(graph,
    neuron, h, spike, hint)`` emits nodes computing the same value from the charged
    membrane ``h`` and the boolean spike tensor, and returns its name. A new reset
    rule is one more entry of :data:`RESET_MODES`; the spec, the container and the
    ONNX export then accept it.
    """

    update: Callable[[LIF, torch.Tensor, torch.Tensor], torch.Tensor]
    onnx: Callable[[GraphEmitter, LIF, str, str, str], str]


def _hard_reset(neuron: LIF, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
    return h * (1.0 - spike) + neuron.v_reset * spike


def _soft_reset(neuron: LIF, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
    return h - neuron.v_threshold * spike


def _hard_reset_onnx(graph: GraphEmitter, neuron: LIF, h: str, spike: str, hint: str) -> str:
    # Where(S, v_reset, H) equals H * (1 - S) + v_reset * S for finite H
    return graph.node("Where", [spike, graph.const(neuron.v_reset), h], hint)


def _soft_reset_onnx(graph: GraphEmitter, neuron: LIF, h: str, spike: str, hint: str) -> str:
    # Where(S, H - v_th, H) equals H - v_th * S
    lowered = graph.node("Sub", [h, graph.const(neuron.v_threshold)], f"{hint}.sub")
    return graph.node("Where", [spike, lowered, h], hint)


RESET_MODES: dict[str, ResetMode] = {
    "hard": ResetMode(_hard_reset, _hard_reset_onnx),
    "soft": ResetMode(_soft_reset, _soft_reset_onnx),
}
"""Reset rules by the name the spec's ``neuron.reset`` uses."""

RESETS = tuple(RESET_MODES)


class LIF(nn.Module):
    """A layer of LIF neurons; input and output are time-major ``[T, B, ...]``.

    Args:
        tau: membrane time constant (> 1 means leaky; 2.0 halves the input at T=1).
        v_threshold: firing threshold.
        v_reset: reset and resting potential.
        reset: ``"hard"`` (set to ``v_reset``) or ``"soft"`` (subtract the threshold).
        detach_reset: stop gradients through the spike used in the reset.
        surrogate: surrogate name or config dict, see :mod:`.surrogate`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        detach_reset: bool = True,
        surrogate: str | dict[str, Any] = "arctan",
    ) -> None:
        super().__init__()
        if reset not in RESET_MODES:
            raise SpecError(f"LIF reset must be one of {list(RESET_MODES)}, got {reset!r}")
        if not tau >= 1.0:
            raise SpecError(f"LIF tau must be >= 1 (1 = no leak), got {tau!r}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = float(v_reset)
        self.reset = reset
        self.detach_reset = bool(detach_reset)
        self.surrogate: Surrogate = make_surrogate(surrogate)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this neuron (JSON-able)."""
        return {
            "tau": self.tau,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "reset": self.reset,
            "detach_reset": self.detach_reset,
            "surrogate": self.surrogate.config(),
        }

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Leaky integration of input ``x`` into membrane ``v``."""
        return v + (x - (v - self.v_reset)) / self.tau

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Spikes (0/1) where the charged membrane reaches the threshold."""
        return self.surrogate(h - self.v_threshold)

    def reset_membrane(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Membrane after the spike: hard reset to ``v_reset`` or soft subtraction."""
        if self.detach_reset:
            spike = spike.detach()
        return RESET_MODES[self.reset].update(self, h, spike)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects time-major [T, B, ...] input, got shape {tuple(x.shape)}")
        steps = x.shape[0]
        spikes = []
        v: torch.Tensor | None = None
        for t in range(steps):
            # first step: V_0 = v_reset, so H_1 = v_reset + X_1 / tau (the same float result, fewer ops)
            h = x[t] / self.tau + self.v_reset if v is None else self.charge(v, x[t])
            spike = self.fire(h)
            if t + 1 < steps:  # the membrane after the last step is never read
                v = self.reset_membrane(h, spike)
            spikes.append(spike)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, reset={self.reset}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate.name}"
        )
