r"""Finetuning helpers: distillation from the input model, and batch-norm re-estimation.

Distillation loss (Hinton et al., 2015) with the uncompressed input model as the
teacher, on by default:

.. math::

    L = (1 - \lambda)\, \mathrm{CE}(s, y)
        + \lambda\, \tau^2\, \mathrm{KL}\bigl(\mathrm{softmax}(t/\tau) \,\|\, \mathrm{softmax}(s/\tau)\bigr)

with student logits :math:`s`, teacher logits :math:`t`, :math:`\lambda = 0.5`,
:math:`\tau = 2`. Binarizing a layer moves the network; the teacher's soft
targets pull it back toward the function it computed before.

Batch-norm re-estimation: after binarization changes a layer's output scale, the
running statistics are stale. :func:`recalibrate_batchnorm` resets them and
recomputes exact averages (``momentum=None``) over training batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.search.model_copy import copy_model
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.outcomes import bounded_batch_size
from albsnn_compress.training.trainer import LossFn

__all__ = ["distillation_loss", "recalibrate_batchnorm", "frozen_teacher"]


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``model`` to distil from."""
    teacher = copy_model(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def distillation_loss(teacher: nn.Module, weight: float = 0.5, temperature: float = 2.0) -> LossFn:
    """A ``loss_fn(model, images, labels)`` mixing cross-entropy and KL to ``teacher``."""

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = model(images)
        with torch.no_grad():
            target = F.softmax(teacher(images) / temperature, dim=1)
        hard = F.cross_entropy(logits, labels)
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), target, reduction="batchmean")
        return (1 - weight) * hard + weight * temperature**2 * soft

    return loss_fn


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, data: ImageSet, ctx: DistContext = LOCAL, batches: int = 20, batch_size: int = 256, seed: int = 0
) -> None:
    """Recompute every batch norm's running mean/variance over ``batches`` training batches.

    A batch holds ``batch_size`` images, fewer where the split is smaller (each process's shard
    gives one batch then, rather than none: statistics reset and never recomputed would break
    the model) or where one forward pass would need more than 1 GiB of activations
    (:func:`~albsnn_compress.training.outcomes.bounded_batch_size`, as ``eval`` bounds its batches).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    shard = len(data) // ctx.world_size
    if shard == 0:
        return  # no image to estimate from on some process: the statistics stay as they are
    batch_size = bounded_batch_size(model, min(batch_size, shard))
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average = exact mean over the batches seen
    model.train()
    loader = BatchLoader(
        data, batch_size, shuffle=True, seed=seed, rank=ctx.rank, world_size=ctx.world_size, drop_last=True
    )
    for index, (images, _) in enumerate(loader):
        if index >= batches:
            break
        model(images.to(ctx.device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        if ctx.distributed:  # every rank must hold the same statistics
            for statistic in (norm.running_mean, norm.running_var):
                if statistic is not None:  # None only for a norm built with track_running_stats=False
                    statistic.copy_(ctx.all_reduce_sum(statistic) / ctx.world_size)
    model.eval()
