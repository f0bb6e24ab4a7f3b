"""FashionMNIST from the standard IDX files, read with numpy (no torchvision).

Layout as torchvision uses it: ``ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
IDX: big-endian header, magic 2051 (images: count, rows, cols) or 2049 (labels:
count), then raw uint8. Every size is checked against the header before use.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import DatasetError

__all__ = ["read_idx", "load_fashion_mnist", "FASHION_MNIST_FILES"]

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed for ``.gz``; any failure is one DatasetError naming the file and the fix."""
    fix = "download the FashionMNIST files again (or copy them in binary mode)"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except EOFError as exc:
        raise DatasetError(f"{path}: the gzip data ends early (a truncated download?); {fix}") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:  # BadGzipFile: bad magic or CRC; zlib.error: a damaged deflate stream
        raise DatasetError(f"{path}: is not a readable gzip file ({exc}); {fix}") from exc
    except OSError as exc:
        raise DatasetError(
            f"{path}: cannot read ({exc.strerror or exc}); check that it is a readable file, or {fix}"
        ) from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX image (``[N, rows, cols]``) or label (``[N]``) file as uint8.

    Raises:
        DatasetError: bad magic number, or fewer bytes than the header announces.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 8:
        raise DatasetError(f"{path}: {len(data)} bytes is too short for an IDX header; re-copy the file")
    (magic,) = struct.unpack(">I", data[:4])
    shape: tuple[int, ...]
    if magic == _IMAGES_MAGIC:
        if len(data) < 16:
            raise DatasetError(f"{path}: truncated IDX image header; re-copy the file")
        count, rows, cols = struct.unpack(">III", data[4:16])
        shape, offset = (count, rows, cols), 16
    elif magic == _LABELS_MAGIC:
        (count,) = struct.unpack(">I", data[4:8])
        shape, offset = (count,), 8
    else:
        raise DatasetError(f"{path}: magic number {magic} is not an IDX image (2051) or label (2049) file")
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - offset != expected:
        raise DatasetError(
            f"{path}: header announces {expected} bytes of data, file has {len(data) - offset}; "
            "the file is truncated or not FashionMNIST"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(raw: Path, stem: str) -> Path:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"FashionMNIST file {stem}[.gz] not found in {raw}; expected the standard IDX files in "
        "ROOT/FashionMNIST/raw/ (pass --data-root ROOT)"
    )


def load_fashion_mnist(root: str | Path, split: str) -> ImageSet:
    """The FashionMNIST ``split`` (``"train"`` or ``"test"``) under ``root``."""
    raw = Path(root) / "FashionMNIST" / "raw"
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    images = read_idx(_find(raw, image_stem))
    labels = read_idx(_find(raw, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"FashionMNIST {split}: {images.shape} images do not match {labels.shape} labels in {raw}")
    if labels.size and labels.max() >= 10:
        raise DatasetError(f"FashionMNIST {split}: label {labels.max()} out of range 0..9 in {raw}")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
