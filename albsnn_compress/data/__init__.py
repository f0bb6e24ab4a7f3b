"""Datasets read from local files (never downloaded): digits, FashionMNIST, CIFAR-10/100."""

from albsnn_compress.data.imageset import DatasetInfo, ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.data.registry import DATASETS, SPLITS, dataset_info, load_split, load_splits

__all__ = ["DATASETS", "SPLITS", "BatchLoader", "DatasetInfo", "ImageSet", "dataset_info", "load_split", "load_splits"]
