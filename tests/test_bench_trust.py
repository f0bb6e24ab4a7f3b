"""The trust benchmark's summary: exceed counts, medians and ranges over seeds, on constructed records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_trust import plot_result, summarize

pytestmark = pytest.mark.benchmark


def _record(seed: int, budget: float, confidence: float | None, saved: float, val: float, test: float) -> dict:
    return {
        "seed": seed,
        "budget": budget,
        "confidence": confidence,
        "epochs": 1.0,
        "storage_saved_percent": saved,
        "binarized": ["layers.conv5"] if saved else [],
        "val": {"drop_points": val},
        "test": {"drop_points": test},
        "test_exceeds_budget": test > budget,
        "seconds": 100.0 + seed,
    }


def test_the_summary_counts_how_often_the_unseen_drop_exceeded_the_budget() -> None:
    cells = [
        _record(0, 0.2, None, 52.3, 0.18, 0.26),
        _record(1, 0.2, None, 52.3, 0.10, 0.05),
        _record(2, 0.2, None, 0.0, -0.1, 0.21),
        _record(0, 0.2, 0.9, 0.0, 0.0, 0.0),
        _record(1, 0.2, 0.9, 0.0, 0.0, 0.0),
    ]
    point, bounded = summarize(cells)
    assert (point["confidence"], point["runs"], point["test_exceeds"], point["val_exceeds"]) == (None, 3, 2, 0)
    assert point["storage_saved_percent"] == {"median": 52.3, "min": 0.0, "max": 52.3}
    assert point["test_drop_points"]["median"] == pytest.approx(0.21)
    assert point["selections"] == ["conv5", "none"] and point["seeds"] == [0, 1, 2]
    assert (bounded["confidence"], bounded["runs"], bounded["test_exceeds"]) == (0.9, 2, 0)


def test_figures_are_drawn_from_a_written_result(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    cells = [_record(0, 0.2, None, 52.3, 0.18, 0.26), {**_record(0, 0.2, None, 78.0, 0.15, 0.3), "epochs": 2.0}]
    result = tmp_path / "trust.json"
    result.write_text(json.dumps({"cells": cells}))
    plot_result(result)
    assert (tmp_path / "trust.png").stat().st_size > 1000 and (tmp_path / "trust-epochs.png").stat().st_size > 1000
