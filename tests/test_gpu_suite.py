"""The GPU-session tools: the CIFAR binary rewrite is exact, and the suite's orchestration runs.

The suite itself only pays off on a lent GPU; its ``--quick`` mode runs the same
stages on digits on the CPU, which is what keeps it from rotting between leases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn_compress.data.cifar import CIFAR10_CLASSES, load_cifar_binary
from albsnn_compress.data.imagefolder import load_image_folder
from benchmarks.cifar_binary import convert
from benchmarks.gpu_suite import affordable_epochs
from benchmarks.gpu_suite import main as suite_main

pytestmark = pytest.mark.benchmark

Image = pytest.importorskip("PIL.Image")


def _image_folder(root: Path, per_class: dict[str, int]) -> None:
    """Random 32x32 RGB PNGs (lossless, so the pixels survive exactly), one folder per CIFAR-10 class."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for name in CIFAR10_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")


def test_binary_rewrite_keeps_every_pixel_label_and_the_order(tmp_path: Path) -> None:
    _image_folder(tmp_path / "png", {"train": 1, "test": 1})
    out = convert("cifar10", tmp_path / "png", tmp_path / "bin")
    assert sorted(p.name for p in out.iterdir()) == [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]
    for split in ("train", "test"):
        original = load_image_folder(tmp_path / "png", split, (3, 32, 32), CIFAR10_CLASSES)
        rewritten = load_cifar_binary(tmp_path / "bin", "cifar10", split, 10)
        assert torch.equal(original.images, rewritten.images)
        assert torch.equal(original.labels, rewritten.labels)


def test_affordable_epochs_fits_the_time_with_a_safety_margin() -> None:
    assert affordable_epochs(100.0, 8.0, 1.0) == 10.0  # 100 / (8 * 1.25)
    assert affordable_epochs(5.0, 8.0, 1.0) == 1.0  # never below the minimum


@pytest.mark.slow
def test_quick_suite_trains_then_runs_the_paper_table(tmp_path: Path) -> None:
    suite_main(
        [
            "--quick",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
            "--deadline",
            "240",
            "--stages",
            "data",
            "cifar10-train",
            "cifar10-paper",
            "--image-epochs",
            "2",
        ]
    )
    status = json.loads((tmp_path / "out" / "suite.json").read_text())["stages"]
    assert {stage: entry["status"] for stage, entry in status.items()} == {
        "data": "ok",
        "cifar10-train": "ok",
        "cifar10-paper": "ok",
    }
    paper = json.loads((tmp_path / "out" / "paper-digits-digits-small-T1.json").read_text())
    assert [run["budget"] for run in paper["runs"]] == [0.0, 0.2, 1.0]
    assert (tmp_path / "out" / "artifacts.tar").stat().st_size > 0
