"""Rewrite a CIFAR image-folder tree in the official binary layout, decoded once.

Decoding 60,000 JPEG/PNG files takes ~17 s on one core, and every ``train``,
``compress`` and benchmark run decodes them again. The official binary layout
(``cifar-10-batches-bin/``, ``cifar-100-binary/``) loads in a fraction of a
second, so a long benchmark session converts once and points ``--data-root``
at the result. Pixels and order are kept exactly (the validation split, drawn
by index, is the same); the data stays whatever copy it was (the CIFAR-10 JPEG
copy remains lossy).

Run from the repository root::

    python -m benchmarks.cifar_binary cifar10 /tmp/cifar10-jpeg /tmp/cifar10-bin
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from albsnn_compress.data.cifar import CIFAR_BINARY_LAYOUT
from albsnn_compress.data.imagefolder import load_image_folder
from albsnn_compress.data.registry import dataset_info
from albsnn_compress.files.atomic import atomic_write_bytes

__all__ = ["convert", "main"]


def _records(images: np.ndarray, labels: np.ndarray, label_bytes: int) -> bytes:
    """Label byte(s) then the 3072 CHW pixel bytes per image (CIFAR-100's coarse label is written as 0)."""
    rows = np.zeros((len(labels), label_bytes + images[0].size), dtype=np.uint8)
    rows[:, label_bytes - 1] = labels
    rows[:, label_bytes:] = images.reshape(len(labels), -1)
    return rows.tobytes()


def convert(name: str, source: Path, target: Path) -> Path:
    """Write ``name`` (cifar10 or cifar100) from the image folder ``source`` into ``target/<official folder>``."""
    info = dataset_info(name)
    folder, files, label_bytes, _ = CIFAR_BINARY_LAYOUT[name]
    out = target / folder
    out.mkdir(parents=True, exist_ok=True)
    for split, names in files.items():
        data = load_image_folder(source, split, info.input_shape, info.class_names)
        images, labels = data.images.numpy(), data.labels.numpy()
        for part, file_name in zip(np.array_split(np.arange(len(labels)), len(names)), names):
            atomic_write_bytes(out / file_name, _records(images[part], labels[part], label_bytes))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(CIFAR_BINARY_LAYOUT))
    parser.add_argument("source", type=Path, help="image-folder tree: SOURCE/train|test/<class>/*")
    parser.add_argument("target", type=Path, help="data root to write (gets the official folder name)")
    args = parser.parse_args(argv)
    print(f"wrote {convert(args.name, args.source, args.target)}")


if __name__ == "__main__":
    main()
