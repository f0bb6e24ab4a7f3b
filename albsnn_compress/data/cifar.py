"""CIFAR-10 and CIFAR-100 from their official *binary* distribution folders.

CIFAR-10 (``cifar-10-batches-bin/``): ``data_batch_1..5.bin`` and ``test_batch.bin``,
records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
CIFAR-100 (``cifar-100-binary/``): ``train.bin`` and ``test.bin``, records of a
coarse label byte, a fine label byte, then 3072 pixel bytes. The python
(pickled) distribution is deliberately not read: unpickling is never done.

Each file's size is checked before it is read: a positive whole number of records,
and at most the official count (10,000 per CIFAR-10 batch file and per test file,
50,000 in CIFAR-100's ``train.bin``), so a multi-GB (or sparse) file is refused
unread; a FIFO, device or folder named like a batch file is refused, never opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet, open_regular, read_exactly
from albsnn_compress.errors import DatasetError

__all__ = ["load_cifar_binary", "CIFAR10_CLASSES", "CIFAR_BINARY_LAYOUT", "CIFAR_RECORDS"]

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

CIFAR_RECORDS: dict[str, dict[str, int]] = {
    "cifar10": {"train": 10000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
}
"""The records of each official file (per batch file for CIFAR-10's train split): a file may hold fewer, never
more."""

_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def has_cifar_binary(root: str | Path, name: str) -> bool:
    """Whether ``root`` holds the official binary distribution of ``name``."""
    folder, files, _, _ = CIFAR_BINARY_LAYOUT[name]
    path = Path(root) / folder / files["test"][0]
    return path.exists() or path.is_symlink()  # a FIFO or a dangling link counts, and is then refused by name


def load_cifar_binary(root: str | Path, name: str, split: str, num_classes: int) -> ImageSet:
    """Read ``split`` of CIFAR-10/100 (``name``) from the binary folder under ``root``.

    Raises:
        DatasetError: a file is missing or not a regular file, holds no record, more records than
            the official file or a size that is not a whole number of records.
    """
    folder, files, label_bytes, label_index = CIFAR_BINARY_LAYOUT[name]
    record = label_bytes + _PIXELS
    most = CIFAR_RECORDS[name][split]
    images, labels = [], []
    for file_name in files[split]:
        path = Path(root) / folder / file_name
        if not (path.exists() or path.is_symlink()):
            raise DatasetError(f"{name}: {path} not found; expected the official binary version in ROOT/{folder}/")
        stream, size = open_regular(path, f"the {_TITLES[name]} binary file {file_name}", most * record)
        with stream:
            if size == 0:
                raise DatasetError(f"{name} {split} split in {path.parent}: {file_name} holds 0 images; re-copy it")
            if size % record:
                raise DatasetError(f"{path}: {size} bytes is not a whole number of {record}-byte records; re-copy it")
            try:
                data = read_exactly(stream, size)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc}); re-copy it") from exc
        if len(data) != size:
            raise DatasetError(
                f"{path}: {len(data)} bytes read, {size} expected (did it change while read?); re-copy it"
            )
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
        labels.append(rows[:, label_index].astype(np.int64))
        images.append(rows[:, label_bytes:].reshape(-1, 3, 32, 32))
    label_array = np.concatenate(labels)
    if label_array.max() >= num_classes:
        raise DatasetError(f"{name} {split}: label {label_array.max()} out of range 0..{num_classes - 1}")
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(label_array))
