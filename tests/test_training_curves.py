"""benchmarks/training_curves.py reads a checkpoint's recorded history back and draws it."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: `pytest` alone misses it
from albsnn_compress.checkpoint import read_checkpoint  # noqa: E402
from benchmarks import training_curves  # noqa: E402

pytestmark = pytest.mark.benchmark


def test_the_result_holds_each_epoch_as_training_recorded_it(digits_checkpoint: Path, tmp_path: Path) -> None:
    training_curves.main(
        ["--checkpoints", str(digits_checkpoint), "--labels", "digits", "--name", "curves", "--results", str(tmp_path)]
    )
    result = json.loads((tmp_path / "curves.json").read_text())
    (run,) = result["runs"]
    metadata = read_checkpoint(digits_checkpoint).metadata
    assert run["history"] == metadata["history"] and len(run["history"]) == metadata["train_config"]["epochs"] == 15
    assert run["accuracy"] == metadata["accuracy"] and run["label"] == "digits"
    assert run["sha256"] == hashlib.sha256(digits_checkpoint.read_bytes()).hexdigest()
    assert result["provenance"]["command"].startswith("python -m benchmarks.training_curves")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_one_label_per_checkpoint(digits_checkpoint: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        training_curves.main(
            ["--checkpoints", str(digits_checkpoint), "--labels", "a", "b", "--results", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    assert "give one label per checkpoint: 1 checkpoints, 2 labels" in capsys.readouterr().err
