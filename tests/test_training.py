"""Training on the real (bundled) digits: clearly beats chance, deterministic on CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.data import load_split
from albsnn_compress.train_model import TrainRequest, train_model
from albsnn_compress.training import TrainConfig, evaluate


def test_short_training_clearly_beats_chance(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    accuracy = evaluate(model, load_split("digits", None, "test"))
    assert accuracy > 80.0  # chance is 10%
    assert model.metadata["accuracy"]["test"] == accuracy
    assert model.metadata["dataset"] == "digits"
    assert len(model.metadata["class_names"]) == 10


def test_same_seed_same_weights() -> None:
    runs = [train_model(TrainRequest(config=TrainConfig(epochs=1, seed=5))).model for _ in range(2)]
    for (name, a), (_, b) in zip(runs[0].state_dict().items(), runs[1].state_dict().items()):
        assert torch.equal(a, b), name


def test_fc_head_preset_trains(tmp_path: Path) -> None:
    result = train_model(TrainRequest(arch="digits-fc", timesteps=2, config=TrainConfig(epochs=6), output=tmp_path / "fc.pt"))
    assert result.test_accuracy > 50.0
    assert (tmp_path / "fc.pt").is_file()
