"""``ImageSet``: a whole image split held in memory as uint8, plus what describes it.

The datasets this tool targets (digits, FashionMNIST, CIFAR) fit in memory many
times over, so every reader returns one of these and batching is plain indexing:
no per-sample ``__getitem__``/collate overhead, and nothing to unpickle.

Every reader opens its files with :func:`open_regular`: a FIFO, a device or a folder
named like a dataset file is refused before it is opened (reading one would block or
never end), and a file larger than the format allows is refused before it is read.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import torch

from albsnn_compress.errors import DatasetError
from albsnn_compress.limits import regular_file_size

__all__ = ["ImageSet", "DatasetInfo", "open_regular", "read_exactly"]


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


def open_regular(path: str | os.PathLike[str], what: str, limit: int | None = None) -> tuple[io.BufferedReader, int]:
    """``path`` opened for binary reading, with its size; refused unless a regular file of at most ``limit`` bytes.

    The size is checked on the path (:func:`~albsnn_compress.limits.regular_file_size`) and
    again on the open descriptor, which is opened non-blocking: a path swapped for a FIFO in
    between is refused too, never waited on.

    Raises:
        DatasetError: missing, unreadable, not a regular file, or larger than ``limit``.
    """
    regular_file_size(path, what, DatasetError, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise DatasetError(f"{Path(path)}: cannot read it ({exc.strerror or exc}); pass {what}") from exc
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise DatasetError(f"{Path(path)}: not a regular file (a folder, FIFO or device); pass {what}")
        if limit is not None and status.st_size > limit:
            raise DatasetError(f"{Path(path)}: {status.st_size} bytes, more than {what} can be ({limit} bytes)")
        stream = open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return stream, status.st_size


def read_exactly(stream: io.BufferedIOBase, size: int) -> bytearray:
    """Up to ``size`` bytes of ``stream`` (fewer only at its end), never more: the buffer is ``size`` bytes at most."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        count = stream.readinto(view[filled:])
        if not count:
            break
        filled += count
    view.release()
    del buffer[filled:]
    return buffer
