"""The post-training precision benchmark: its settings and its quick run on digits end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albsnn_compress.checkpoint import load_checkpoint
from benchmarks.bench_precision import main, settings

pytestmark = pytest.mark.benchmark


def test_every_layer_meets_every_precision_then_the_groups(digits_checkpoint: Path) -> None:
    rows = settings(load_checkpoint(digits_checkpoint))
    labels = [label for label, _ in rows]
    assert labels[:4] == ["conv1 at 1", "conv1 at 2", "conv1 at 4", "conv1 at 8"]
    assert labels[-5:] == [*(f"candidates at {bits}" for bits in (1, 2, 4, 8)), "every layer at 8"]
    assert set(rows[-2][1]) == {f"layers.conv{i}" for i in range(2, 5)}  # first and last stay float
    assert len(rows[-1][1]) == 5


def test_the_quick_run_measures_drops_and_savings(tmp_path: Path) -> None:
    main(["--quick", "--results", str(tmp_path)])
    written = json.loads((tmp_path / "quick-precision.json").read_text())
    rows = {row["setting"]: row for row in written["rows"]}
    assert written["provenance"]["commit"] and len(rows) == 5 * 4 + 5
    saved = [rows[f"candidates at {bits}"]["storage_saved_percent"] for bits in (1, 2, 4, 8)]
    assert saved == sorted(saved, reverse=True) and saved[-1] > 0  # fewer bits save more
    for row in rows.values():
        assert row["val"]["images"] == 144 and row["test"]["images"] == 359
    assert rows["conv4 at 8"]["test"]["lost"] <= rows["conv4 at 1"]["test"]["lost"]  # 8 bits keep more than 1
