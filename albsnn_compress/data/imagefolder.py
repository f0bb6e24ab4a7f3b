"""Image-folder trees: ``ROOT/<split>/<class>/*.png|jpg`` (Pillow, optional extra).

Classes are mapped to labels by a given list of class names (the official order
for CIFAR), else by ``ROOT/classes.txt`` if present, else alphabetically. Every
image must have the dataset's shape; a missing folder or a wrong-sized image is
a clear :class:`DatasetError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import DatasetError

__all__ = ["load_image_folder", "has_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def has_image_folder(root: str | Path) -> bool:
    """Whether ``root`` looks like an image-folder tree with a ``test`` split."""
    return (Path(root) / "test").is_dir()


def _class_names(root: Path, split_dir: Path, class_names: tuple[str, ...] | None) -> tuple[str, ...]:
    if class_names:
        return class_names
    listing = root / "classes.txt"
    if listing.is_file():
        return tuple(line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip())
    return tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))


def load_image_folder(
    root: str | Path,
    split: str,
    shape: tuple[int, int, int],
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    """Read every image of ``root/split/<class>/`` into an :class:`ImageSet`.

    Raises:
        DatasetError: the folder or a class folder is missing, or an image is unreadable
            or not of ``shape`` (``[C, H, W]``).
    """
    try:
        from PIL import Image
    except ImportError as exc:
        raise DatasetError("reading image folders needs Pillow: pip install 'albsnn-compress[images]'") from exc
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"image folder {split_dir} not found; expected ROOT/{split}/<class>/*.png|jpg")
    names = _class_names(root, split_dir, class_names)
    channels, height, width = shape
    mode = "RGB" if channels == 3 else "L"
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DatasetError(
                f"class folder {class_dir} not found; expected one folder per class {list(names)[:3]}..."
            )
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as img:
                    pixels = np.asarray(img.convert(mode), dtype=np.uint8)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read image ({exc})") from exc
            if pixels.shape[:2] != (height, width):
                raise DatasetError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected {width}x{height}")
            images.append(pixels.reshape(height, width, channels))
            labels.append(label)
    if not images:
        raise DatasetError(f"no images found under {split_dir}")
    stacked = np.stack(images).transpose(0, 3, 1, 2).copy()
    return ImageSet(torch.from_numpy(stacked), torch.tensor(labels, dtype=torch.int64))
