"""``--quick`` for the search benchmarks: a fresh digits model and throwaway folders, seconds not hours."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.machine import RESULTS

__all__ = ["quick_defaults"]

QUICK_EPOCHS = 5  # a digits-small model that has learned something, in a few seconds


def quick_defaults(args: argparse.Namespace) -> None:
    """Fill ``args`` for a toy run: a digits checkpoint trained now (unless ``--checkpoint`` names one),
    results under ``benchmarks/results/quick`` and cells in a temporary folder (unless given)."""
    tmp = Path(tempfile.mkdtemp())
    if args.checkpoint is None:
        args.checkpoint = tmp / "digits.pt"
        train_model(TrainRequest(config=TrainConfig(epochs=QUICK_EPOCHS), output=args.checkpoint))
    args.results = args.results or RESULTS / "quick"
    args.cells = args.cells or tmp / "cells"
