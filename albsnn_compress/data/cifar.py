"""CIFAR-10 and CIFAR-100 from their official *binary* distribution folders.

CIFAR-10 (``cifar-10-batches-bin/``): ``data_batch_1..5.bin`` and ``test_batch.bin``,
records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
CIFAR-100 (``cifar-100-binary/``): ``train.bin`` and ``test.bin``, records of a
coarse label byte, a fine label byte, then 3072 pixel bytes. The python
(pickled) distribution is deliberately not read: unpickling is never done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import DatasetError

__all__ = ["load_cifar_binary", "CIFAR10_CLASSES", "CIFAR_BINARY_LAYOUT"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_PIXELS = 3 * 32 * 32

# name -> (folder, {split: files}, label bytes per record, index of the label used)
CIFAR_BINARY_LAYOUT: dict[str, tuple[str, dict[str, list[str]], int, int]] = {
    "cifar10": (
        "cifar-10-batches-bin",
        {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
        1,
        0,
    ),
    "cifar100": ("cifar-100-binary", {"train": ["train.bin"], "test": ["test.bin"]}, 2, 1),
}


def has_cifar_binary(root: str | Path, name: str) -> bool:
    """Whether ``root`` holds the official binary distribution of ``name``."""
    folder, files, _, _ = CIFAR_BINARY_LAYOUT[name]
    return (Path(root) / folder / files["test"][0]).is_file()


def load_cifar_binary(root: str | Path, name: str, split: str, num_classes: int) -> ImageSet:
    """Read ``split`` of CIFAR-10/100 (``name``) from the binary folder under ``root``.

    Raises:
        DatasetError: a file is missing, or its size is not a whole number of records.
    """
    folder, files, label_bytes, label_index = CIFAR_BINARY_LAYOUT[name]
    record = label_bytes + _PIXELS
    images, labels = [], []
    for file_name in files[split]:
        path = Path(root) / folder / file_name
        if not path.is_file():
            raise DatasetError(f"{name}: {path} not found; expected the official binary version in ROOT/{folder}/")
        data = np.fromfile(path, dtype=np.uint8)
        if data.size == 0 or data.size % record:
            raise DatasetError(f"{path}: {data.size} bytes is not a whole number of {record}-byte records; re-copy it")
        rows = data.reshape(-1, record)
        labels.append(rows[:, label_index].astype(np.int64))
        images.append(rows[:, label_bytes:].reshape(-1, 3, 32, 32))
    label_array = np.concatenate(labels)
    if label_array.max() >= num_classes:
        raise DatasetError(f"{name} {split}: label {label_array.max()} out of range 0..{num_classes - 1}")
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(label_array))
