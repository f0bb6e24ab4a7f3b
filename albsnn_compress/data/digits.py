"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no download.

The data has no official test split, so one is carved with a fixed seed (20%).
Pixels are 0..16; they are kept as uint8 with ``pixel_max = 16``.
"""

from __future__ import annotations

import numpy as np
import torch

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.errors import DatasetError

__all__ = ["load_digits_split", "DIGITS_TEST_FRACTION"]

DIGITS_TEST_FRACTION = 0.2
_SPLIT_SEED = 20240101


def load_digits_split(split: str) -> ImageSet:
    """The ``train`` or ``test`` part of the bundled digits (fixed 80/20 split)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("the digits dataset needs scikit-learn: pip install 'albsnn-compress[digits]'") from exc
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(len(labels) * DIGITS_TEST_FRACTION))
    chosen = order[:n_test] if split == "test" else order[n_test:]
    chosen = np.sort(chosen)
    return ImageSet(torch.from_numpy(images[chosen].copy()), torch.from_numpy(labels[chosen]), pixel_max=16.0)
