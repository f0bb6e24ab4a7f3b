"""Batch norm synchronised across processes, for time-distributed ``[T, B, ...]`` inputs.

Under DDP every process normalises with the statistics of its own shard of the
batch, so N processes with a global batch of 128 normalise over 128/N samples
each. :class:`TimeSyncBatchNorm` computes the mean and variance over the whole
global batch instead (and, as in :mod:`albsnn_compress.snn.layers`, over every
time step: ``[T, B, ...]`` is folded into ``[T*B, ...]`` first). Training with it
on N processes then matches one process on the same global batch.

Why not ``nn.SyncBatchNorm.convert_sync_batchnorm``: it would replace our
``TimeBatchNorm2d`` with a plain ``SyncBatchNorm`` that reads ``[T, B, C, H, W]``
as ``[N, C, ...]`` with C = B, and DDP refuses ``SyncBatchNorm`` on CPU. So the
conversion here is ours and temporary: :func:`synchronized_batchnorm` swaps the
layers in for a training slice and swaps the original classes back afterwards.
The swapped-in layers *share* the parameter and buffer tensors of the originals
(no copies), so optimizers, DDP's gradient hooks and buffer broadcasts keep
working across the swap, and checkpoints keep the usual classes and keys.

On CUDA the forward is PyTorch's fused SyncBatchNorm; on CPU (gloo) it is a small
differentiable all-reduce of per-channel sums, which PyTorch does not provide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from albsnn_compress.snn.layers import TimeBatchNorm1d, TimeBatchNorm2d, fold_time

__all__ = ["TimeSyncBatchNorm", "convert_sync_batchnorm_", "revert_sync_batchnorm_", "synchronized_batchnorm"]

_CONVERTIBLE = (TimeBatchNorm2d, TimeBatchNorm1d)
_FUSED_DEVICES = ("cuda", "hpu", "xpu")
_Module = TypeVar("_Module", bound=nn.Module)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the gradients (every rank used the sum)."""

    # torch leaves Function.apply unannotated; it takes forward's arguments after ctx and returns its value
    apply: ClassVar[Callable[[torch.Tensor, dist.ProcessGroup | None], torch.Tensor]]

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        reduced = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group)
        return reduced

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllReduceSum.apply(grad, ctx.group), None


class TimeSyncBatchNorm(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` over ``[T, B, C, H, W]`` or ``[T, B, F]``: statistics over time, batch and processes.

    ``original_class`` remembers the layer class it replaced, so
    :func:`revert_sync_batchnorm_` restores exactly that class. Outside training,
    or on a single process, it computes what ``original_class`` computes.
    """

    original_class: type[nn.modules.batchnorm._BatchNorm] = TimeBatchNorm2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(self._forward_folded, x)

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type in _FUSED_DEVICES:
            return super().forward(x)
        if self.training and _world_size(self.process_group) > 1:
            return self._gloo_forward(x)
        return nn.modules.batchnorm._BatchNorm.forward(self, x)  # SyncBatchNorm refuses CPU tensors

    def _gloo_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm over the global batch with two differentiable all-reduces (CPU/gloo)."""
        self._check_input_dim(x)
        group = self.process_group
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), local]), group)
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply(centered.square().sum(dims), group) / count  # biased: used to normalise
        y = centered * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1).clamp_min(1))
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """The same exponential (or, with ``momentum=None``, cumulative) average as ``nn.BatchNorm``."""
        # called only with track_running_stats, so the three buffers exist
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


def _world_size(group: dist.ProcessGroup | None) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _share_state(source: nn.Module, target: _Module) -> _Module:
    """Give ``target`` the very tensors of ``source`` (parameters and buffers) and its mode."""
    for name, parameter in source.named_parameters(recurse=False):
        setattr(target, name, parameter)
    for name, buffer in source.named_buffers(recurse=False):
        target._buffers[name] = buffer
    target.train(source.training)
    return target


def _swap(model: nn.Module, make: Callable[[_Module], nn.Module], wanted: tuple[type[_Module], ...]) -> list[str]:
    """Replace each child whose class is exactly one of ``wanted`` by ``make(child)``; return their names."""
    swapped = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) not in wanted:
                continue
            setattr(parent, child_name, make(cast(_Module, child)))  # its class is one of wanted
            swapped.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return swapped


def _to_sync(norm: nn.modules.batchnorm._BatchNorm, process_group: dist.ProcessGroup | None) -> TimeSyncBatchNorm:
    sync = TimeSyncBatchNorm(
        norm.num_features,
        norm.eps,
        norm.momentum,
        norm.affine,
        norm.track_running_stats,
        process_group,
        device="meta",
    )
    sync.original_class = type(norm)
    return _share_state(norm, sync)


def _from_sync(sync: TimeSyncBatchNorm) -> nn.modules.batchnorm._BatchNorm:
    norm = sync.original_class(
        sync.num_features, sync.eps, sync.momentum, sync.affine, sync.track_running_stats, device="meta"
    )
    return _share_state(sync, norm)


def convert_sync_batchnorm_(model: nn.Module, process_group: dist.ProcessGroup | None = None) -> list[str]:
    """Swap every ``TimeBatchNorm2d``/``TimeBatchNorm1d`` of ``model`` for a :class:`TimeSyncBatchNorm`, in place.

    The new layers share the old layers' parameter and buffer tensors.

    Args:
        model: the network (modified in place).
        process_group: the processes to synchronise over (all of them by default).

    Returns:
        The qualified names of the swapped layers (state-dict keys are unchanged).
    """
    return _swap(model, lambda norm: _to_sync(norm, process_group), _CONVERTIBLE)


def revert_sync_batchnorm_(model: nn.Module) -> list[str]:
    """Undo :func:`convert_sync_batchnorm_`: each layer gets back its original class (tensors shared)."""
    return _swap(model, _from_sync, (TimeSyncBatchNorm,))


@contextmanager
def synchronized_batchnorm(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, ``model``'s time batch norms are synchronised; afterwards (even on error) they are not.

    Example:
        >>> with synchronized_batchnorm(model, enabled=ctx.distributed):
        ...     train_some_steps(ddp_model)
    """
    if not enabled:
        yield model
        return
    convert_sync_batchnorm_(model)
    try:
        yield model
    finally:
        revert_sync_batchnorm_(model)
