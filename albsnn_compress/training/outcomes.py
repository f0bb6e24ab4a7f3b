"""Per-image outcomes: which images of a split a model answers correctly.

Accuracy is their mean; the paired drop between two models
(:mod:`albsnn_compress.search.paired_drop`) needs the vectors themselves, image by
image in the split's order, which is why they are kept whole rather than
counted.

Every evaluation is bounded the way ``eval`` bounds its own: a
:class:`~albsnn_compress.snn.spec.SpikingNet`'s batches are lowered by
:func:`~albsnn_compress.files.model_cost.fitting_batch_size` so that one forward
pass needs at most :data:`~albsnn_compress.files.model_cost.MAX_INFERENCE_BYTES`
(1 GiB) of activations, whatever its time steps (a model at T = 4096 runs a few
images at a time instead of 256). Other modules have no spec to measure and run
the batch they are given.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.files.model_cost import fitting_batch_size
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.distributed import LOCAL, DistContext

__all__ = ["correct_answers", "accuracy_percent", "bounded_batch_size"]


def bounded_batch_size(model: nn.Module, requested: int) -> int:
    """``requested``, lowered (to 1 at least) so that one forward pass of ``model`` (no gradients) needs at most 1 GiB
    of activations; a module that is not a :class:`SpikingNet` has no spec to measure: ``requested`` as it is."""
    if isinstance(model, SpikingNet):
        return fitting_batch_size(model.spec, model.timesteps, requested)
    return requested


def correct_answers(model: nn.Module, data: ImageSet, ctx: DistContext = LOCAL, batch_size: int = 256) -> torch.Tensor:
    """A boolean vector over ``data``'s images, in order: whether ``model``'s top-1 answer is the label.

    ``batch_size`` images at most per forward pass, fewer where :func:`bounded_batch_size` says so.
    Parametrized weights (binarized, k-bit) are computed once for the whole split.
    Under DDP each rank answers its shard (every ``world_size``-th image, from its
    rank) and the vectors are summed across ranks, so every rank returns the whole
    split's vector.
    """
    model.eval()
    model.to(ctx.device)
    loader = BatchLoader(data, bounded_batch_size(model, batch_size), rank=ctx.rank, world_size=ctx.world_size)
    correct = torch.zeros(len(data), dtype=torch.int64)
    position = ctx.rank
    # cached: a binarized or k-bit layer's weights are computed once for the split, not once per batch
    with torch.no_grad(), parametrize.cached():
        for images, labels in loader:
            hits = model(images.to(ctx.device)).argmax(dim=1).cpu() == labels
            count = labels.numel()
            correct[position : position + count * ctx.world_size : ctx.world_size] = hits.long()
            position += count * ctx.world_size
    return ctx.all_reduce_sum(correct).bool()


def accuracy_percent(correct: torch.Tensor) -> float:
    """Top-1 accuracy in percent from a per-image correctness vector."""
    return 100.0 * float(correct.sum()) / max(int(correct.numel()), 1)
