"""``ImageSet``: a whole image split held in memory as uint8, plus what describes it.

The datasets this tool targets (digits, FashionMNIST, CIFAR) fit in memory many
times over, so every reader returns one of these and batching is plain indexing:
no per-sample ``__getitem__``/collate overhead, and nothing to unpickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ImageSet", "DatasetInfo"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its dataset (stored in checkpoint metadata)."""

    name: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False  # random crop with padding + horizontal flip while training
    needs_root: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ImageSet:
    """``images`` uint8 ``[N, C, H, W]`` in ``[0, pixel_max]``; ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    pixel_max: float = 255.0
    info: DatasetInfo | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at ``indices`` (a view-free copy), same scale and info."""
        return ImageSet(self.images[indices], self.labels[indices], self.pixel_max, self.info)

    def as_float(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Images (all, or those at ``indices``) as float32 in ``[0, 1]``."""
        images = self.images if indices is None else self.images[indices]
        return images.to(torch.float32) / self.pixel_max
