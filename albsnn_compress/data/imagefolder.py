"""Image-folder trees: ``ROOT/<split>/<class>/*.png|jpg`` (Pillow, optional extra).

Classes are mapped to labels by a given list of class names (the official order
for CIFAR), else by ``ROOT/classes.txt`` if present, else alphabetically. Every
image must have the dataset's shape; a missing folder or a wrong-sized image is
a clear :class:`DatasetError`.

Bounds, each checked before the work it protects:

* a split holds at most ``max_images`` images (the official count for a known
  dataset: 50,000 train and 10,000 test for CIFAR), and never more than
  :data:`~albsnn_compress.limits.MAX_ELEMENTS` bytes of pixels; the folder
  listing stops as soon as it is exceeded;
* an image file is a regular file (a FIFO named ``0001.png`` would block the
  read forever) of at most :func:`max_image_file_bytes` bytes;
* an image is exactly the dataset's width x height, read from its header
  (``Image.open`` decodes no pixel) before any pixel is decoded, so a PNG that
  declares hundreds of megapixels is refused after a few bytes. Pillow's own
  decompression-bomb check runs inside ``Image.open`` and is a refusal here, never
  a warning; the process-wide ``Image.MAX_IMAGE_PIXELS`` is left as it is;
* only the PNG, JPEG and BMP decoders are used, whatever a file's content claims.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet, open_regular, read_exactly
from albsnn_compress.errors import DatasetError, one_line
from albsnn_compress.limits import MAX_ELEMENTS, MAX_NAME_CHARS, check_name

__all__ = ["load_image_folder", "has_image_folder", "IMAGE_SUFFIXES", "max_image_file_bytes"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_PIL_FORMATS = ("PNG", "JPEG", "BMP")

_IMAGE_FILE_SLACK = 4 << 20
"""Bytes an image file may hold beyond its pixels stored raw: room for metadata (ICC profile, EXIF, text chunks)."""

_CLASSES_FILE_BYTES = 1 << 20
"""The largest ``classes.txt`` read: 4,096 names of 256 characters."""


def max_image_file_bytes(shape: tuple[int, int, int]) -> int:
    """The largest image file accepted for images of ``shape`` (``[C, H, W]``).

    8 bytes per pixel (RGBA at 16 bits per channel, stored uncompressed: the largest
    any of PNG, JPEG or BMP needs) plus 4 MiB of metadata: 4.0 MiB for CIFAR's 32x32.
    """
    _, height, width = shape
    return 8 * height * width + _IMAGE_FILE_SLACK


def has_image_folder(root: str | Path) -> bool:
    """Whether ``root`` looks like an image-folder tree with a ``test`` split."""
    return (Path(root) / "test").is_dir()


def _class_names(root: Path, split_dir: Path, class_names: tuple[str, ...] | None) -> tuple[str, ...]:
    if class_names:
        return class_names
    listing = root / "classes.txt"
    if listing.exists() or listing.is_symlink():
        stream, _ = open_regular(listing, "a text file of class names, one a line", _CLASSES_FILE_BYTES)
        try:
            with stream:
                data = bytes(read_exactly(stream, _CLASSES_FILE_BYTES))
        except OSError as exc:
            raise DatasetError(f"{listing}: cannot read it ({exc.strerror or one_line(exc)})") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{listing}: not UTF-8 text ({one_line(exc)}); write one class name a line") from exc
        names = [line.strip() for line in text.splitlines() if line.strip()]
        for number, name in enumerate(names, 1):
            check_name(name, f"{listing} line {number}", DatasetError, MAX_NAME_CHARS)
        return tuple(names)
    try:
        return tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    except OSError as exc:
        raise DatasetError(f"{split_dir}: cannot list it ({exc.strerror or one_line(exc)})") from exc


def _image_paths(split_dir: Path, names: tuple[str, ...], most: int) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image of the split, listing no more than ``most`` + 1 of them."""
    found: list[tuple[Path, int]] = []
    for label, name in enumerate(names):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DatasetError(
                f"class folder {class_dir} not found; expected one folder per class {list(names)[:3]}..."
            )
        paths = []
        try:
            for path in class_dir.iterdir():
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(path)
                    if len(found) + len(paths) > most:
                        raise DatasetError(
                            f"{split_dir}: more than {most} images; the {split_dir.name} split holds at most {most} "
                            "(point --data-root at the dataset's folder)"
                        )
        except DatasetError:
            raise
        except OSError as exc:
            raise DatasetError(f"{class_dir}: cannot list it ({exc.strerror or one_line(exc)})") from exc
        found += [(path, label) for path in sorted(paths)]
    return found


def _read_image(path: Path, shape: tuple[int, int, int], mode: str) -> np.ndarray:
    """The pixels of one image file as ``[H, W, C]`` uint8; nothing decoded unless its header says ``shape``."""
    from PIL import Image

    channels, height, width = shape
    stream, _ = open_regular(path, "an image file (PNG, JPEG or BMP)", max_image_file_bytes(shape))
    with stream:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(stream, formats=_PIL_FORMATS)
            with image:
                if image.size != (width, height):  # from the header: no pixel is decoded yet
                    raise DatasetError(f"{path}: image is {image.size[0]}x{image.size[1]}, expected {width}x{height}")
                pixels = np.asarray(image.convert(mode), dtype=np.uint8)
        except DatasetError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DatasetError(
                f"{path}: declares far more pixels than {width}x{height} ({one_line(exc)}); the file is not "
                "one of this dataset's images"
            ) from exc
        except Exception as exc:  # Pillow's decoders raise many types on damaged input; each is this refusal
            raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {one_line(exc)})") from exc
    if pixels.shape[:2] != (height, width):
        raise DatasetError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected {width}x{height}")
    return pixels.reshape(height, width, channels)


def load_image_folder(
    root: str | Path,
    split: str,
    shape: tuple[int, int, int],
    class_names: tuple[str, ...] | None = None,
    max_images: int | None = None,
) -> ImageSet:
    """Read every image of ``root/split/<class>/`` into an :class:`ImageSet`.

    Args:
        root: the tree's root folder.
        split: the split's folder name (``train`` or ``test``).
        shape: every image's ``[C, H, W]`` (C is 1 or 3).
        class_names: the classes in label order; default: ``classes.txt`` or the folders, sorted.
        max_images: the most images the split may hold (a known dataset's count); never more
            than fit in :data:`~albsnn_compress.limits.MAX_ELEMENTS` bytes of pixels.

    Raises:
        DatasetError: the folder or a class folder is missing, the split holds no image or
            more than ``max_images``, or an image is not a regular file, too large a file,
            unreadable or not of ``shape``.
    """
    try:
        from PIL import Image  # noqa: F401  # only to say what is missing before any work
    except ImportError as exc:
        raise DatasetError("reading image folders needs Pillow: pip install 'albsnn-compress[images]'") from exc
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"image folder {split_dir} not found; expected ROOT/{split}/<class>/*.png|jpg")
    names = _class_names(root, split_dir, class_names)
    channels, height, width = shape
    most = MAX_ELEMENTS // (channels * height * width)
    if max_images is not None:
        most = min(most, max_images)
    mode = "RGB" if channels == 3 else "L"
    paths = _image_paths(split_dir, names, most)
    if not paths:
        raise DatasetError(
            f"the {split} split in {split_dir} holds 0 images; expected ROOT/{split}/<class>/*"
            f"{'|'.join(IMAGE_SUFFIXES)}"
        )
    stacked = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for index, (path, _) in enumerate(paths):
        stacked[index] = _read_image(path, shape, mode).transpose(2, 0, 1)
    labels = torch.tensor([label for _, label in paths], dtype=torch.int64)
    return ImageSet(torch.from_numpy(stacked), labels)
