"""What compress accepts as a split: an ImageSet, (images, labels) tensors, or a DataLoader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import CompressionError
from albsnn_compress.search.data_input import as_imageset


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(10, 1, 4, 4, generator=generator), torch.arange(10) % 3


def test_every_form_gives_the_same_images() -> None:
    images, labels = _tensors()
    from_tensors = as_imageset((images, labels), "train_data")
    from_loader = as_imageset(DataLoader(TensorDataset(images, labels), batch_size=4), "train_data")
    for data in (from_tensors, from_loader):
        assert torch.equal(data.as_float(), images) and torch.equal(data.labels, labels)
    imageset = ImageSet(images, labels)
    assert as_imageset(imageset, "train_data") is imageset


def test_malformed_splits_are_refused_by_name() -> None:
    images, labels = _tensors()
    with pytest.raises(
        CompressionError,
        match="val_data: found dict; pass an ImageSet, \\(images, labels\\) tensors or a torch DataLoader",
    ):
        as_imageset({"images": images}, "val_data")  # type: ignore[arg-type]
    with pytest.raises(CompressionError, match=r"train_data: 10 images but labels of shape \[9\]"):
        as_imageset((images, labels[:9]), "train_data")
    with pytest.raises(
        CompressionError, match="train_data: the DataLoader yields Tensor batches; expected \\(images, labels\\)"
    ):
        as_imageset(DataLoader(images, batch_size=4), "train_data")
    with pytest.raises(CompressionError, match="train_data: the DataLoader yields no batches"):
        as_imageset(DataLoader(TensorDataset(images[:0], labels[:0]), batch_size=4), "train_data")
