"""Batches from an in-memory :class:`ImageSet`, shuffled reproducibly, shardable by rank.

Shuffling and sharding use :class:`torch.utils.data.DistributedSampler` (PyTorch's
own engine), so one process and N processes see the same global order for the
same seed and epoch. Augmentation (random crop with 4-pixel zero padding and
horizontal flip, the standard CIFAR recipe) runs on whole batches with a
generator seeded from ``(seed, epoch, rank)``, so results do not depend on
global RNG state.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from albsnn_compress.data.imageset import ImageSet

__all__ = ["BatchLoader", "augment_batch"]

_PAD = 4


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and random horizontal flip of float ``[B, C, H, W]``."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (_PAD, _PAD, _PAD, _PAD))
    dy = torch.randint(0, 2 * _PAD + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * _PAD + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :]
    batch_idx = torch.arange(batch)[:, None, None, None]
    channel_idx = torch.arange(images.shape[1])[None, :, None, None]
    cropped = padded[batch_idx, channel_idx, rows, cols]
    flip = torch.rand(batch, generator=generator) < 0.5
    cropped[flip] = cropped[flip].flip(-1)
    return cropped


class _IndexList(torch.utils.data.Dataset[int]):
    """The minimal dataset DistributedSampler needs: just a length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


class BatchLoader:
    """Iterate ``(images in [0, 1], labels)`` batches of an :class:`ImageSet`.

    Args:
        data: the split.
        batch_size: per-process batch size.
        shuffle: reshuffle every epoch (call :meth:`set_epoch`).
        augment: apply :func:`augment_batch`.
        seed: fixes shuffling and augmentation.
        rank, world_size: this process's shard (DDP); 0 and 1 for a single process.
        drop_last: drop the last incomplete batch (training).
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.drop_last = drop_last
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.sampler: DistributedSampler[int] = DistributedSampler(
            _IndexList(len(data)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order and augmentation of ``epoch``."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def _shard(self) -> torch.Tensor:
        if self.shuffle:
            return torch.tensor(list(iter(self.sampler)), dtype=torch.int64)
        # evaluation: every sample exactly once across ranks (counts are all-reduced)
        return torch.arange(self.rank, len(self.data), self.world_size)

    def __len__(self) -> int:
        count = len(self._shard())
        if self.drop_last:
            return count // self.batch_size
        return -(-count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._shard()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 101 + self.rank)
        stop = len(indices) - (len(indices) % self.batch_size if self.drop_last else 0)
        for start in range(0, stop, self.batch_size):
            batch = indices[start : start + self.batch_size]
            images = self.data.as_float(batch)
            if self.augment:
                images = augment_batch(images, generator)
            yield images, self.data.labels[batch]
