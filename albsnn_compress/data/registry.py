"""The dataset registry: names, what each dataset is, and its train/val/test splits.

The validation split is carved from the *training* split with a fixed seed
(never from the test split), so ``train`` and ``compress`` always agree on which
images are validation images, whatever ``--seed`` says. Its share (``val_share``,
10 % unless ``train --val-share`` chose another) is written into the checkpoint and
read back by ``compress``; the shares nest (the first images of one fixed permutation),
so a larger share holds every image of a smaller one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albsnn_compress.data.cifar import CIFAR10_CLASSES, has_cifar_binary, load_cifar_binary
from albsnn_compress.data.digits import load_digits_split
from albsnn_compress.data.idx import FASHION_MNIST_IMAGES, load_fashion_mnist
from albsnn_compress.data.imagefolder import has_image_folder, load_image_folder
from albsnn_compress.data.imageset import DatasetInfo, ImageSet
from albsnn_compress.errors import DatasetError

__all__ = [
    "DATASETS",
    "SPLITS",
    "VAL_FRACTION",
    "OFFICIAL_IMAGES",
    "check_val_share",
    "recorded_val_share",
    "dataset_info",
    "load_split",
    "load_splits",
]

VAL_FRACTION = 0.1
"""The default share of the official training split held out for validation (a fraction, not points)."""
_VAL_SPLIT_SEED = 12345
SPLITS = ("train", "val", "test")

_CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm".split()
)

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", (1, 8, 8), tuple(str(d) for d in range(10)), (0.3053,), (0.3760,), needs_root=False
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,),
        (0.3530,),
    ),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True
    ),
    "cifar100": DatasetInfo(
        "cifar100", (3, 32, 32), _CIFAR100_CLASSES, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True
    ),
}


OFFICIAL_IMAGES: dict[str, dict[str, int]] = {
    "digits": {"train": 1438, "test": 359},
    "fashion-mnist": dict(FASHION_MNIST_IMAGES),
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
}
"""Images in each official split: the most a copy of the dataset (a file, a folder tree) may hold."""


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a registered dataset name."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _load_official(info: DatasetInfo, root: Path | None, split: str) -> ImageSet:
    if info.name == "digits":
        return load_digits_split(split)
    if root is None:
        raise DatasetError(f"dataset {info.name} needs --data-root DIR (nothing is ever downloaded)")
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a folder; pass --data-root DIR that holds the {info.name} files")
    if info.name == "fashion-mnist":
        return load_fashion_mnist(root, split)
    if has_cifar_binary(root, info.name):
        return load_cifar_binary(root, info.name, split, info.num_classes)
    if has_image_folder(root):
        return load_image_folder(
            root, split, info.input_shape, info.class_names, max_images=OFFICIAL_IMAGES[info.name][split]
        )
    raise DatasetError(
        f"{info.name} not found in {root}: expected the official binary folder "
        f"(cifar-10-batches-bin/ or cifar-100-binary/) or an image-folder tree ROOT/train|test/<class>/*.png|jpg"
    )


def _source(info: DatasetInfo, root: Path | None) -> str:
    """Where a dataset's images come from, for messages."""
    return "scikit-learn's bundled digits" if not info.needs_root or root is None else str(root)


def check_val_share(share: object) -> float:
    """A validation share: a number strictly between 0 and 1 (a fraction of the training images).

    Raises:
        DatasetError: anything else, naming the value and the expected form.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < float(share) < 1.0:
        raise DatasetError(
            f"validation share {share!r} must be a fraction strictly between 0 and 1 of the training images, "
            f"e.g. --val-share {VAL_FRACTION}"
        )
    return float(share)


def recorded_val_share(metadata: dict[str, object]) -> float:
    """The validation share a checkpoint's ``metadata`` records (``train`` writes it; 10 % when absent).

    Whoever decides on a trained model's validation split must use this share: any other
    would hand it images the model trained on.

    Raises:
        DatasetError: the recorded value is not a fraction strictly between 0 and 1.
    """
    return check_val_share(metadata.get("val_share", VAL_FRACTION))


def _fewest_training_images(val_share: float) -> int:
    """The smallest official training split that leaves at least one image in both ``train`` and ``val``."""
    return next((n for n in range(2, 10**6) if 1 <= round(n * val_share) < n), 10**6)


def _val_indices(count: int, val_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    order = np.random.default_rng(_VAL_SPLIT_SEED).permutation(count)
    n_val = int(round(count * val_share))
    return torch.from_numpy(np.sort(order[n_val:])), torch.from_numpy(np.sort(order[:n_val]))


def load_splits(
    name: str, root: str | Path | None, splits: tuple[str, ...] = SPLITS, val_share: float = VAL_FRACTION
) -> dict[str, ImageSet]:
    """Load several splits of dataset ``name``, reading each official file once.

    ``train`` and ``val`` partition the official training split: ``val_share`` of it
    (a fraction, default 10 %) is validation, chosen by a fixed seed.

    Raises:
        DatasetError: unknown name or split, a share outside (0, 1), or the files are missing/malformed.
    """
    val_share = check_val_share(val_share)
    info = dataset_info(name)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DatasetError(f"unknown split {unknown[0]!r}; choose from {SPLITS}")
    root_path = Path(root) if root is not None else None
    result: dict[str, ImageSet] = {}
    if "train" in splits or "val" in splits:
        full = _load_official(info, root_path, "train")
        train_idx, val_idx = _val_indices(len(full), val_share)
        if "train" in splits:
            result["train"] = full.subset(train_idx)
        if "val" in splits:
            result["val"] = full.subset(val_idx)
    if "test" in splits:
        result["test"] = _load_official(info, root_path, "test")
    for split, data in result.items():
        if len(data) == 0:
            carved = (
                f" ({val_share:.0%} of the {len(full)} training images, rounded); the training split needs at "
                f"least {_fewest_training_images(val_share)} images"
                if split in ("train", "val")
                else ""
            )
            raise DatasetError(f"{name}: the {split} split in {_source(info, root_path)} holds 0 images{carved}")
        data.info = info
        if tuple(data.images.shape[1:]) != info.input_shape:
            raise DatasetError(
                f"{name} {split}: images have shape {tuple(data.images.shape[1:])}, expected {info.input_shape}"
            )
    return {split: result[split] for split in splits}


def load_split(name: str, root: str | Path | None, split: str, val_share: float = VAL_FRACTION) -> ImageSet:
    """Load one split of dataset ``name``; see :func:`load_splits`."""
    return load_splits(name, root, (split,), val_share)[split]
