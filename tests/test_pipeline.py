"""The whole compress run on a checkpoint: files written, reproducible to the byte."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from albsnn_compress.data import load_split
from albsnn_compress.formats.container import read_container
from albsnn_compress.pipeline import CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig
from albsnn_compress.training import evaluate
from tests.clihelp import run_cli

FAST = SearchConfig(epochs=0.3, trial_epochs=0.3, seed=4)


def test_same_seed_gives_a_byte_identical_container(digits_checkpoint: Path, tmp_path: Path) -> None:
    outcomes = [
        compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, FAST, tmp_path / f"run{i}")) for i in range(2)
    ]
    assert outcomes[0].result.binarized == outcomes[1].result.binarized
    for kind in ("container", "onnx"):
        assert outcomes[0].files[kind].read_bytes() == outcomes[1].files[kind].read_bytes(), kind


def test_container_reproduces_the_compressed_model(digits_checkpoint: Path, tmp_path: Path) -> None:
    outcome = compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, FAST, tmp_path / "out"))
    container = read_container(outcome.files["container"])
    images = load_split("digits", None, "test").as_float()
    with torch.no_grad():
        assert torch.equal(container.model(images), outcome.result.model(images))
    assert evaluate(container.model, load_split("digits", None, "test")) == outcome.result.accuracy["test_after"]
    report = json.loads(outcome.files["report (json)"].read_text())
    on_disk = report["storage"]["on_disk"]
    for key, kind in (("container", "container"), ("onnx", "onnx")):
        assert on_disk[key]["bytes"] == outcome.files[kind].stat().st_size
    assert on_disk["input_checkpoint"]["bytes"] == digits_checkpoint.stat().st_size


def test_cli_default_command_writes_every_output(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    run_cli([str(digits_checkpoint), "--budget", "0.5", "--epochs", "0.3", "--trial-epochs", "0.3", "--quiet", "-o", str(out)])
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model.albsnn", "model.onnx", "report.html", "report.json"]
