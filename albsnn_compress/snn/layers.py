"""Time-distributed layers: stateless modules applied to every step of ``[T, B, ...]``.

Each class subclasses the ordinary torch layer and only folds time into the batch
(``[T, B, ...] -> [T*B, ...]``), runs the parent's ``forward`` and unfolds again.
So a ``TimeConv2d`` *is* an ``nn.Conv2d``: anything that finds, binarizes or exports
convolutions by type works on it unchanged, and its state-dict keys are the usual
``weight``/``bias``. Batch norm over the folded batch shares statistics across time
steps (tdBN-style), which is what lets a single time step train well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "TimeConv2d",
    "TimeLinear",
    "TimeBatchNorm2d",
    "TimeBatchNorm1d",
    "TimeAvgPool2d",
    "TimeMaxPool2d",
    "TimeGlobalAvgPool",
    "TimeFlatten",
    "fold_time",
]


def fold_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample ``fn`` to a time-major tensor by folding T into the batch."""
    steps, batch = x.shape[:2]
    return torch.unflatten(fn(x.flatten(0, 1)), 0, (steps, batch))  # Tensor.unflatten's wrapper is unannotated


class TimeConv2d(nn.Conv2d):
    """``nn.Conv2d`` over ``[T, B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeLinear(nn.Linear):
    """``nn.Linear`` over ``[T, B, F]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over ``[T, B, C, H, W]``; statistics shared across steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over ``[T, B, F]``; statistics shared across steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` over ``[T, B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` over ``[T, B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(super().forward, x)


class TimeGlobalAvgPool(nn.Module):
    """Global average pooling ``[T, B, C, H, W] -> [T, B, C]`` (the GAP head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class TimeFlatten(nn.Module):
    """Flatten features per step: ``[T, B, ...] -> [T, B, F]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)
