"""FashionMNIST from the standard IDX files, read with numpy (no torchvision).

Layout as torchvision uses it: ``ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
IDX: big-endian header, magic 2051 (images: count, rows, cols) or 2049 (labels:
count), then raw uint8.

Every size is bounded before anything is allocated: the header is read first and
checked against what the file must be (:class:`IdxLayout`: FashionMNIST's train
split has at most 60,000 images of 28x28, its test split at most 10,000), an
uncompressed file's size must be exactly what its header declares, and a ``.gz``
file is inflated to at most the declared size plus one byte (more data is refused,
so a small file that inflates to gigabytes costs what its header declares, at most
47 MB). A FIFO, device or folder named like one of the files is refused, never read.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet, open_regular, read_exactly
from albsnn_compress.errors import DatasetError, one_line
from albsnn_compress.limits import MAX_ELEMENTS, element_count

__all__ = ["read_idx", "load_fashion_mnist", "FASHION_MNIST_FILES", "FASHION_MNIST_IMAGES", "IdxLayout"]

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_HEADER_BYTES = {_IMAGES_MAGIC: 16, _LABELS_MAGIC: 8}

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_MNIST_IMAGES = {"train": 60000, "test": 10000}
"""The images of each official split: a file may hold fewer (a trimmed copy), never more."""

_FASHION_MNIST_SHAPE = (28, 28)

_GZIP_SLACK = 1 << 20
"""Bytes a ``.gz`` file may have beyond 101% of its largest valid content: gzip's worst case (stored blocks)
adds 5 bytes per 64 KiB plus a header, so a real file never comes near; a larger one is refused unread."""

_FIX = "download the FashionMNIST files again (or copy them in binary mode)"


@dataclass(frozen=True)
class IdxLayout:
    """What one IDX file of a known dataset must hold.

    Attributes:
        magic: the IDX magic number (2051 images, 2049 labels).
        item_shape: the exact shape of one item (``(28, 28)`` for an image, ``()`` for a label).
        max_count: the most items the file may hold.
        what: how messages name the file (``"FashionMNIST train images"``).
    """

    magic: int
    item_shape: tuple[int, ...]
    max_count: int
    what: str

    def max_data_bytes(self) -> int:
        """The largest payload the file may declare, in bytes (uint8 items)."""
        return self.max_count * int(np.prod(self.item_shape, dtype=np.int64))

    def max_file_bytes(self, compressed: bool) -> int:
        """The largest file that can hold that payload, gzip-compressed or not."""
        raw = _HEADER_BYTES[self.magic] + self.max_data_bytes()
        return raw + raw // 100 + _GZIP_SLACK if compressed else raw


def _header(stream: io.BufferedIOBase, path: Path, layout: IdxLayout | None) -> tuple[tuple[int, ...], int, int]:
    """The shape the header declares, its payload size and the header's size in bytes, checked against ``layout``."""
    start = bytes(read_exactly(stream, 8))
    if len(start) < 8:
        raise DatasetError(f"{path}: {len(start)} bytes is too short for an IDX header; re-copy the file")
    magic, first = struct.unpack(">II", start)
    shape: tuple[int, ...]
    if magic == _IMAGES_MAGIC:
        rest = bytes(read_exactly(stream, 8))
        if len(rest) < 8:
            raise DatasetError(f"{path}: truncated IDX image header; re-copy the file")
        rows, cols = struct.unpack(">II", rest)
        shape = (first, rows, cols)
    elif magic == _LABELS_MAGIC:
        shape = (first,)
    else:
        raise DatasetError(f"{path}: magic number {magic} is not an IDX image (2051) or label (2049) file")
    if layout is not None:
        if magic != layout.magic:
            kind = "image" if layout.magic == _IMAGES_MAGIC else "label"
            raise DatasetError(
                f"{path}: magic number {magic}, expected {layout.magic} ({layout.what}: an IDX {kind} file)"
            )
        if shape[1:] != layout.item_shape:
            raise DatasetError(
                f"{path}: header declares items of shape {list(shape[1:])}, {layout.what} are "
                f"{list(layout.item_shape)}; the file is not FashionMNIST"
            )
        if shape[0] > layout.max_count:
            raise DatasetError(
                f"{path}: header declares {shape[0]} items, {layout.what} are at most {layout.max_count}; "
                "the file is damaged or not FashionMNIST"
            )
    declared = element_count(shape, f"{path}: IDX header", DatasetError, MAX_ELEMENTS)
    return shape, declared, _HEADER_BYTES[magic]


def _payload(
    stream: io.BufferedIOBase, path: Path, declared: int, compressed: bool, available: int | None
) -> bytearray:
    """Exactly ``declared`` payload bytes; refused when the file holds fewer or more."""
    if available is not None and available != declared:  # an uncompressed file: its size says it, nothing read yet
        raise DatasetError(
            f"{path}: header announces {declared} bytes of data, file has {available}; "
            "the file is truncated or not FashionMNIST"
        )
    data = read_exactly(stream, declared)
    if len(data) != declared:
        raise DatasetError(
            f"{path}: header announces {declared} bytes of data, file has {len(data)}; "
            "the file is truncated or not FashionMNIST"
        )
    if compressed and stream.read(1):  # at the end, this read also checks the gzip CRC and length
        raise DatasetError(
            f"{path}: decompresses to more than the {declared} bytes of data its header announces; "
            "the file is damaged or not FashionMNIST"
        )
    return data


def read_idx(path: str | Path, layout: IdxLayout | None = None) -> np.ndarray:
    """Read an IDX image (``[N, rows, cols]``) or label (``[N]``) file as uint8.

    Args:
        path: the file, gzip-compressed when its name ends in ``.gz``.
        layout: what the file must hold (a known dataset's file); without it, any IDX
            image or label file of at most :data:`~albsnn_compress.limits.MAX_ELEMENTS` bytes of data.

    Raises:
        DatasetError: not a regular file, or larger than ``layout`` allows; bad magic number;
            a header that disagrees with ``layout``; fewer or more bytes than the header announces;
            damaged gzip data. Nothing beyond the declared size is ever read or allocated.
    """
    path = Path(path)
    compressed = path.suffix == ".gz"
    limit = layout.max_file_bytes(compressed) if layout is not None else None
    what = f"the IDX file of {layout.what}" if layout is not None else "an IDX file"
    raw, size = open_regular(path, what, limit)
    try:
        with raw:
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with stream:
                shape, declared, header_bytes = _header(stream, path, layout)
                available = None if compressed else size - header_bytes
                data = _payload(stream, path, declared, compressed, available)
    except DatasetError:  # a FileNotFoundError, hence an OSError: ours already names the file and the fix
        raise
    except EOFError as exc:
        raise DatasetError(f"{path}: the gzip data ends early (a truncated download?); {_FIX}") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:  # BadGzipFile: bad magic or CRC; zlib.error: a damaged deflate stream
        raise DatasetError(f"{path}: is not a readable gzip file ({one_line(exc)}); {_FIX}") from exc
    except OSError as exc:
        raise DatasetError(
            f"{path}: cannot read ({exc.strerror or one_line(exc)}); check that it is a readable file, or {_FIX}"
        ) from exc
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _find(raw: Path, stem: str) -> Path:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.exists() or candidate.is_symlink():  # a FIFO or a dangling link is found, then refused by name
            return candidate
    raise DatasetError(
        f"FashionMNIST file {stem}[.gz] not found in {raw}; expected the standard IDX files in "
        "ROOT/FashionMNIST/raw/ (pass --data-root ROOT)"
    )


def load_fashion_mnist(root: str | Path, split: str) -> ImageSet:
    """The FashionMNIST ``split`` (``"train"`` or ``"test"``) under ``root``.

    Raises:
        DatasetError: a file is missing, malformed or larger than the official split, the images
            and labels disagree, or the split holds no image.
    """
    raw = Path(root) / "FashionMNIST" / "raw"
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    most = FASHION_MNIST_IMAGES[split]
    images = read_idx(
        _find(raw, image_stem), IdxLayout(_IMAGES_MAGIC, _FASHION_MNIST_SHAPE, most, f"FashionMNIST {split} images")
    )
    if images.shape[0] == 0:
        raise DatasetError(f"FashionMNIST {split} split in {raw}: {image_stem} holds 0 images; {_FIX}")
    labels = read_idx(_find(raw, label_stem), IdxLayout(_LABELS_MAGIC, (), most, f"FashionMNIST {split} labels"))
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"FashionMNIST {split}: {images.shape} images do not match {labels.shape} labels in {raw}")
    if labels.max() >= 10:
        raise DatasetError(f"FashionMNIST {split}: label {labels.max()} out of range 0..9 in {raw}")
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
