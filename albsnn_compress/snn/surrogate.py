r"""Heaviside spike functions with surrogate gradients.

Forward, every surrogate is the Heaviside step :math:`\Theta(x) = 1[x \ge 0]`
(``x`` is membrane potential minus threshold). Backward, it uses the derivative
of a smooth stand-in :math:`\sigma(x)`; each class names that stand-in in
``smooth`` so a test can compare the hand-written backward with autograd:

* ``arctan``: :math:`\sigma(x) = \frac{1}{\pi}\arctan(\frac{\pi}{2}\alpha x) + \frac12`,
  :math:`\sigma'(x) = \frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha x)^2}` (SpikingJelly's ATan).
* ``rectangular``: :math:`\sigma(x) = \mathrm{clip}(x/w + \frac12, 0, 1)`,
  :math:`\sigma'(x) = \frac1w 1[|x| < w/2]` (the boxcar of Wu et al., 2018).

:meth:`Surrogate.fire` is what the LIF calls: threshold (and, at T=1, the charge
from rest) and spike in one autograd node with the hand-written backward
:meth:`Surrogate.grad_input`, so a training step makes as few passes over the
activations as it can (``benchmarks/bench_training.py`` measures it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from albsnn_compress.errors import SpecError

__all__ = ["Surrogate", "ArcTan", "Rectangular", "make_surrogate", "first_spiking_input", "SURROGATES"]


Divisor = float | torch.Tensor | None
_SEARCH_ULPS = 64  # how far from (threshold - offset) * divisor the first spiking input is looked for


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``grad`` summed over the dimensions ``like`` was broadcast along: the gradient of a per-channel setting."""
    return grad.sum_to_size(like.shape) if grad.dim() >= like.dim() else grad.sum().reshape(like.shape)


def _margin(x: torch.Tensor, divisor: Divisor, offset: float, threshold: float | torch.Tensor) -> torch.Tensor:
    """``M = x / divisor + offset - threshold``, the operations skipped where they change nothing."""
    h = x if divisor is None else x / divisor
    if offset != 0.0:  # + 0 would only turn -0 into +0, which fires the same
        h = h + offset
    return h - threshold


@functools.lru_cache(maxsize=256)
def first_spiking_input(
    dtype: torch.dtype, device: torch.device, divisor: float | None, offset: float, threshold: float, strict: bool
) -> float | None:
    """The smallest ``x`` of ``dtype`` that fires, so ``x >= it`` is exactly ``Theta(M(x))``; ``None`` if not found.

    ``M(x)`` is a chain of correctly rounded operations with fixed operands, each
    nondecreasing in ``x`` (``divisor > 0``), so the inputs that fire are exactly
    those from some ``x*`` up, however the roundings fall. ``x*`` lies within a
    few ulps of ``(threshold - offset) * divisor``: it is found by evaluating
    ``M`` itself, on this device and dtype, at the floats around that guess.
    """
    if dtype not in (torch.float32, torch.float64):
        return None
    guess = torch.tensor((threshold - offset) * (divisor or 1.0), dtype=dtype, device=device)
    if not bool(torch.isfinite(guess)):
        return None
    below, above = [guess], [guess]
    for _ in range(_SEARCH_ULPS):
        below.append(torch.nextafter(below[-1], guess.new_tensor(-math.inf)))
        above.append(torch.nextafter(above[-1], guess.new_tensor(math.inf)))
    candidates = torch.stack(below[::-1] + above[1:])
    margin = _margin(candidates, divisor, offset, threshold)
    fires = (margin > 0) if strict else (margin >= 0)
    if bool(fires[0]) or not bool(fires[-1]):
        return None
    return float(candidates[int(fires.to(torch.int8).argmax())])


class _Spike(torch.autograd.Function):
    """Fused charge-from-rest and fire, one autograd node: ``S = Theta(x / divisor + offset - threshold)``.

    Scalar settings (the usual case): forward is one comparison ``x >= x*``
    (:func:`first_spiking_input`) written straight into the float output, and
    keeps only the input; backward computes the slope at ``(x - x*) / divisor``
    (``x*`` of the inclusive threshold, so ``strict`` changes no gradient) in
    three passes over one scratch tensor. Otherwise (per-channel settings, or a
    dtype without the search) forward computes and keeps the margin ``M`` and
    backward takes two passes. Either way backward is ``grad * sigma'(M) / divisor``.
    """

    # torch leaves Function.apply unannotated; it takes forward's arguments after ctx and returns its value
    apply: ClassVar[Callable[[torch.Tensor, Divisor, float, float | torch.Tensor, bool, Surrogate], torch.Tensor]]

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        divisor: Divisor,
        offset: float,
        threshold: float | torch.Tensor,
        strict: bool,
        surrogate: Surrogate,
    ) -> torch.Tensor:
        ctx.surrogate = surrogate
        scalar = not isinstance(divisor, torch.Tensor) and not isinstance(threshold, torch.Tensor)
        start: float | None = None
        center: float | None = None
        if scalar and not torch.compiler.is_compiling():  # compiled: the plain margin, which inductor fuses
            # the slope is centred on the inclusive boundary, strict or not: the same gradient
            key = (x.dtype, x.device, divisor, float(offset), float(threshold))
            start, center = first_spiking_input(*key, strict), first_spiking_input(*key, False)
        ctx.center = center if start is not None else None
        if start is not None and center is not None:  # i.e. ctx.center is not None
            ctx.divisor = divisor
            ctx.save_for_backward(x)
            return torch.ge(x, start, out=torch.empty_like(x))
        margin = _margin(x, divisor, offset, threshold)
        divisor_tensor = divisor if isinstance(divisor, torch.Tensor) else None
        threshold_tensor = threshold if isinstance(threshold, torch.Tensor) else None
        keep_x = divisor_tensor is not None and divisor_tensor.requires_grad
        ctx.save_for_backward(margin, x if keep_x else None, divisor_tensor, threshold_tensor)
        ctx.divisor = None if divisor_tensor is not None else divisor
        compare = torch.gt if strict else torch.ge  # strict: H == v_th does not fire
        return compare(margin, 0.0, out=torch.empty_like(margin, dtype=x.dtype))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.center is not None:
            (x,) = ctx.saved_tensors
            scale = 1.0 if ctx.divisor is None else 1.0 / ctx.divisor
            grad_x = ctx.surrogate.grad_input(grad_out, x - ctx.center, ctx.divisor, margin_scale=scale, scratch=True)
            return grad_x, None, None, None, None, None
        margin, x, divisor_tensor, threshold_tensor = ctx.saved_tensors
        divisor = divisor_tensor if divisor_tensor is not None else ctx.divisor
        grad_x = ctx.surrogate.grad_input(grad_out, margin, divisor)
        grad_divisor = grad_threshold = None
        if x is not None and ctx.needs_input_grad[1]:  # dH/d(divisor) = -x / divisor^2
            grad_divisor = _reduce_to(-grad_x * x / divisor_tensor, divisor_tensor)
        if threshold_tensor is not None and ctx.needs_input_grad[3]:  # dS/d(threshold) = -dS/dH
            grad_h = grad_x if divisor is None else grad_x * divisor
            grad_threshold = _reduce_to(-grad_h, threshold_tensor)
        return grad_x, grad_divisor, None, grad_threshold, None, None


class Surrogate:
    """A spike function: Heaviside forward, a smooth function's slope backward."""

    name: str = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``Theta(x)`` of a margin ``x`` (membrane minus threshold)."""
        return _Spike.apply(x, None, 0.0, 0.0, False, self)

    def fire(
        self,
        h: torch.Tensor,
        threshold: float | torch.Tensor,
        *,
        strict: bool = False,
        divisor: Divisor = None,
        offset: float = 0.0,
    ) -> torch.Tensor:
        """Spikes of membrane ``H = h / divisor + offset`` against ``threshold``, in one autograd node.

        Equals ``self(H - threshold)`` (minus the spikes at ``H == threshold`` when
        ``strict``) with the same gradients, in fewer passes over memory: the LIF
        fires a charged membrane with it, and at T=1 charges and fires in one call.
        """
        return _Spike.apply(h, divisor, offset, threshold, strict, self)

    def grad_input(
        self,
        grad_out: torch.Tensor,
        margin: torch.Tensor,
        divisor: Divisor = None,
        *,
        margin_scale: float = 1.0,
        scratch: bool = False,
    ) -> torch.Tensor:
        """``grad_out * sigma'(M) / divisor`` with ``M = margin * margin_scale``: the spike's backward, by hand.

        The divisor is the input scale of a fused charge (``tau``); taking it here
        folds it into the slope's constants instead of one more pass over the
        gradient. ``scratch``: ``margin`` is a temporary that may be overwritten; the
        result is then written into it.
        """
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

    def grad_input(
        self,
        grad_out: torch.Tensor,
        margin: torch.Tensor,
        divisor: Divisor = None,
        *,
        margin_scale: float = 1.0,
        scratch: bool = False,
    ) -> torch.Tensor:
        # grad * (alpha/2) / (1 + (pi/2 alpha M)^2) / d  =  grad / (d (2/alpha) + d (pi^2 alpha/2) M^2): two passes
        factor = 2 / self.alpha * (divisor if isinstance(divisor, float) else 1.0)
        slope_inverse = torch.addcmul(
            margin.new_full((), factor),
            margin,
            margin,
            value=(math.pi / 2 * self.alpha * margin_scale) ** 2 * factor,
            out=margin if scratch else None,
        )
        if isinstance(divisor, torch.Tensor):
            slope_inverse.mul_(divisor)
        return torch.div(grad_out, slope_inverse, out=slope_inverse)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha}


class Rectangular(Surrogate):
    """Boxcar surrogate of ``width`` around the threshold, height ``1 / width``."""

    name = "rectangular"

    def __init__(self, width: float = 1.0) -> None:
        self.width = float(width)

    def grad_input(
        self,
        grad_out: torch.Tensor,
        margin: torch.Tensor,
        divisor: Divisor = None,
        *,
        margin_scale: float = 1.0,
        scratch: bool = False,
    ) -> torch.Tensor:
        inside = margin.abs() < self.width / (2 * margin_scale)
        grad = torch.where(inside, grad_out, grad_out.new_zeros(()), out=margin if scratch else None)
        grad /= self.width * (divisor if isinstance(divisor, float) else 1.0)
        return grad / divisor if isinstance(divisor, torch.Tensor) else grad

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
        raise SpecError(f"surrogate {name!r}: bad parameters {params}: {exc}") from exc
