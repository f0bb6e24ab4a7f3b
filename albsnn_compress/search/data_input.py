"""What ``compress`` accepts as a data split, turned into the in-memory :class:`ImageSet` the search uses.

Three forms: an :class:`~albsnn_compress.data.imageset.ImageSet` (used as it
is), ``(images, labels)`` tensors, or a :class:`torch.utils.data.DataLoader`
yielding ``(images, labels)`` batches. A loader is read once, in full, into
memory: the search samples its own batches, reproducibly from its seed (the
loader's own shuffling and augmentation are not used after that pass). Images
given as tensors or through a loader are used as given (the model must accept
them); an ImageSet's uint8 images become floats in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import CompressionError

__all__ = ["SplitData", "as_imageset"]

SplitData = ImageSet | tuple[torch.Tensor, torch.Tensor] | DataLoader[Any]
_FORMS = "an ImageSet, (images, labels) tensors or a torch DataLoader of (images, labels) batches"


def _read_loader(loader: DataLoader[Any], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise CompressionError(
                f"{what}: the DataLoader yields {type(batch).__name__} batches; expected (images, labels)"
            )
        images.append(batch[0])
        labels.append(batch[1])
    if not images:
        raise CompressionError(f"{what}: the DataLoader yields no batches; pass a loader over a non-empty dataset")
    if not all(isinstance(t, torch.Tensor) for t in images + labels):
        raise CompressionError(
            f"{what}: the DataLoader's batches are not tensors; give it a dataset of (image, label) tensors"
        )
    return torch.cat(images), torch.cat(labels)


def as_imageset(data: SplitData, what: str) -> ImageSet:
    """``data`` as an :class:`ImageSet` (see the module docstring).

    Args:
        data: the split in any accepted form.
        what: its role, for messages (``"train_data"``).

    Raises:
        CompressionError: ``data`` is none of the accepted forms, or images and labels disagree.
    """
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, DataLoader):
        images, labels = _read_loader(data, what)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        images, labels = data
    else:
        raise CompressionError(f"{what}: found {type(data).__name__}; pass {_FORMS}")
    if labels.dim() != 1 or len(labels) != len(images):
        raise CompressionError(
            f"{what}: {len(images)} images but labels of shape {list(labels.shape)}; pass one class index per image"
        )
    return ImageSet(images, labels.to(torch.int64), pixel_max=1.0)
