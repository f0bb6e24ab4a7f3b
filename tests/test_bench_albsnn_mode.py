"""ALBSNN's mode against compress-after-training: the quick run end to end on digits, and the shared split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from albsnn_compress.data.registry import VAL_FRACTION
from albsnn_compress.search.paired_drop import val_share_to_resolve
from benchmarks.bench_albsnn_mode import main, shared_val_share

pytestmark = pytest.mark.benchmark


def test_both_modes_run_from_scratch_and_record_what_they_cost(tmp_path: Path) -> None:
    main(["--quick", "--jobs", "1", "--threads", "1", "--results", str(tmp_path), "--cells", str(tmp_path / "cells")])
    written = json.loads((tmp_path / "quick-albsnn-mode.json").read_text())
    runs = {run["mode"]: run for run in written["runs"]}
    assert set(runs) == {"adaptive", "after"} and written["provenance"]["commit"]
    for mode, float_epochs in (("adaptive", 5.0), ("after", 10.0)):  # --quick: 10 epochs, half of them warm-up
        run = runs[mode]
        assert run["val_share"] == VAL_FRACTION and run["val_images"] == round(0.1 * 1438)
        assert run["total_epochs"] >= float_epochs + 2.0 - 1e-9  # the search's finetuning comes on top
        assert (run["storage_saved_percent"] > 0) == bool(run["binarized"])
        assert 50.0 < run["float_test_accuracy"] <= 100.0 and 0.0 < run["test_accuracy"] <= 100.0  # chance: 10
    assert [row["mode"] for row in written["summary"]] == ["adaptive", "after"]
    again = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert again == ["seed0-adaptive.json", "seed0-after.json"]  # a rerun would skip both
    figure = tmp_path / "quick-albsnn-mode.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    main(["--plot", str(tmp_path / "quick-albsnn-mode.json")])  # redrawn from the JSON alone
    assert figure.stat().st_size > 10_000
    assert {run["train_epochs"] for run in written["runs"]} == {10.0}


def test_one_mode_alone_runs_only_that_mode(tmp_path: Path) -> None:
    args = ["--quick", "--modes", "adaptive", "--jobs", "1", "--threads", "1"]
    main([*args, "--results", str(tmp_path), "--cells", str(tmp_path / "cells")])
    written = json.loads((tmp_path / "quick-albsnn-mode.json").read_text())
    assert [(run["mode"], run["train_epochs"]) for run in written["runs"]] == [("adaptive", 10.0)]


def test_both_modes_hold_out_the_share_the_budget_needs() -> None:
    args = argparse.Namespace(dataset="digits", data_root=None, budget=1.0)
    share = shared_val_share(args)
    assert share == val_share_to_resolve(1.0, 1438) and share > VAL_FRACTION
    assert shared_val_share(argparse.Namespace(dataset="digits", data_root=None, budget=50.0)) == VAL_FRACTION
