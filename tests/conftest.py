"""Shared fixtures: real data locations and a small trained digits model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# The test models are tiny: one thread is faster than two fighting over a small core count.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """../shared/datasets, or skip the test where it is absent (a user's machine)."""
    if not (SHARED_DATASETS / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits-small SNN trained for 15 epochs (a few seconds), written as model.pt."""
    path = tmp_path_factory.mktemp("digits") / "model.pt"
    train_model(TrainRequest(config=TrainConfig(epochs=15, seed=0), output=path))
    return path
