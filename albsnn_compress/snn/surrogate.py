r"""Heaviside spike functions with surrogate gradients.

Forward, every surrogate is the Heaviside step :math:`\Theta(x) = 1[x \ge 0]`
(``x`` is membrane potential minus threshold). Backward, it uses the derivative
of a smooth stand-in :math:`\sigma(x)`; each class names that stand-in in
``smooth`` so a test can compare the hand-written backward with autograd:

* ``arctan``: :math:`\sigma(x) = \frac{1}{\pi}\arctan(\frac{\pi}{2}\alpha x) + \frac12`,
  :math:`\sigma'(x) = \frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha x)^2}` (SpikingJelly's ATan).
* ``rectangular``: :math:`\sigma(x) = \mathrm{clip}(x/w + \frac12, 0, 1)`,
  :math:`\sigma'(x) = \frac1w 1[|x| < w/2]` (the boxcar of Wu et al., 2018).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from albsnn_compress.errors import SpecError

__all__ = ["Surrogate", "ArcTan", "Rectangular", "make_surrogate", "SURROGATES"]


class _ArcTanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad = (alpha / 2) / (1 + (math.pi / 2 * alpha * x).square())
        return grad_out * grad, None


class _RectangularSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.width = width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        width = ctx.width
        grad = (x.abs() < width / 2).to(x.dtype) / width
        return grad_out * grad, None


class Surrogate:
    """A spike function: Heaviside forward, a smooth function's slope backward."""

    name: str = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth function whose derivative the backward pass uses."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able description, the inverse of :func:`make_surrogate`."""
        raise NotImplementedError


class ArcTan(Surrogate):
    """Arctan surrogate; ``alpha`` sets the peak slope ``alpha / 2`` at threshold."""

    name = "arctan"

    def __init__(self, alpha: float = 2.0) -> None:
        self.alpha = float(alpha)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _ArcTanSpike.apply(x, self.alpha)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha}


class Rectangular(Surrogate):
    """Boxcar surrogate of ``width`` around the threshold, height ``1 / width``."""

    name = "rectangular"

    def __init__(self, width: float = 1.0) -> None:
        self.width = float(width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _RectangularSpike.apply(x, self.width)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x / self.width + 0.5, 0.0, 1.0)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width}


SURROGATES: dict[str, type[Surrogate]] = {"arctan": ArcTan, "rectangular": Rectangular}


def make_surrogate(config: str | dict[str, Any]) -> Surrogate:
    """Build a surrogate from its name or its :meth:`Surrogate.config` dict."""

    if isinstance(config, str):
        config = {"name": config}
    params = dict(config)
    name = params.pop("name", None)
    if name not in SURROGATES:
        raise SpecError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    try:
        return SURROGATES[name](**params)
    except TypeError as exc:
        raise SpecError(f"surrogate {name!r}: bad parameters {params}: {exc}") from None
