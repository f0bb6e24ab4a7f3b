"""Training on the real (bundled) digits: clearly beats chance, deterministic on CPU to the byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.data import load_split
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.pipeline import CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig, evaluate


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
    result = train_model(
        TrainRequest(arch="digits-fc", timesteps=2, config=TrainConfig(epochs=6), output=tmp_path / "fc.pt")
    )
    assert result.test_accuracy > 50.0
    assert (tmp_path / "fc.pt").is_file()


def test_same_seed_same_checkpoint_bytes_and_then_the_same_container(tmp_path: Path) -> None:
    """The promise of `train`: same seed, settings, machine and thread count -> the same file, byte for byte."""
    paths = [tmp_path / f"run{i}" / "model.pt" for i in range(2)]
    for path in paths:
        path.parent.mkdir()
        result = train_model(TrainRequest(config=TrainConfig(epochs=1, seed=5), output=path))
        assert "train_seconds" not in result.metadata and result.seconds > 0  # the wall time stays out of the file
    assert paths[0].read_bytes() == paths[1].read_bytes()
    config = SearchConfig(strategy="none", epochs=0, trial_epochs=0, seed=1)
    containers = [
        compress_checkpoint(CompressRequest(path, 1.0, config, path.parent / "out")).files["container"]
        for path in paths
    ]
    assert containers[0].read_bytes() == containers[1].read_bytes()
    assert read_container(containers[0]).header["source_sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
