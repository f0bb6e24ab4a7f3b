"""The recipe benchmark's table on constructed rows, and its quick run on digits end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_recipe import RECIPES, main, markdown_table

pytestmark = pytest.mark.benchmark


def _row(name: str, val: float, test: float) -> dict:
    recipe = RECIPES[name]
    drop = {"lost": 30, "gained": 20, "interval95_points": [val - 0.4, val + 0.4]}
    return {
        "row": name,
        "recipe": {"lr": recipe.lr, "binary_lr": recipe.binary_lr, "distill_weight": recipe.distill_weight, "seed": 0},
        "binarized": ["layers.conv2", "layers.conv3"] if recipe.layers else [],
        "storage_saved_percent": 90.0 if recipe.layers else 0.0,
        "val": {**drop, "drop_points": val},
        "test": {**drop, "drop_points": test},
        "finetune_epochs": recipe.epochs,
        "seconds": 12.0,
    }


def test_the_table_shows_each_rows_rates_drops_and_changed_answers() -> None:
    lines = markdown_table([_row("all-blr1e-2", 0.68, 0.28), _row("control-lr1e-3", 0.0, -0.14)]).splitlines()
    assert lines[2].startswith(
        "| all-blr1e-2 | conv2,conv3 | 90.0 | 8.00 | 0.001 / 0.01 | 0.5 | 0 | +0.68 [+0.28, +1.08] | 50 |"
    )
    assert lines[3].startswith("| control-lr1e-3 | none (control) | 0.0 | 8.00 | 0.001 / 0.001 |")


def test_the_quick_run_measures_each_row_on_both_splits(tmp_path: Path) -> None:
    main(
        [
            "--quick",
            "--rows",
            "control-lr1e-3",
            "all-lr1e-2",
            "--results",
            str(tmp_path),
            "--cells",
            str(tmp_path / "c"),
        ]
    )
    result = json.loads((tmp_path / "quick-recipe.json").read_text())
    control, binary = result["rows"]
    assert control["binarized"] == [] and control["storage_saved_percent"] == 0.0
    assert binary["binarized"] and binary["storage_saved_percent"] > 80
    assert all(row["val"]["images"] > 0 and row["test"]["images"] > 0 for row in result["rows"])
    assert result["provenance"]["commit"]
