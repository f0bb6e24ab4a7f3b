"""Progress reaches the caller as events; the command line draws them as bars."""

from __future__ import annotations

import io

from rich.console import Console

from albsnn_compress.cli.progress import ProgressBars, ProgressLines, make_progress, progress_bars
from albsnn_compress.progress import ProgressEvent
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig


def test_training_reports_every_phase_and_finishes_each() -> None:
    events: list[ProgressEvent] = []
    train_model(TrainRequest(config=TrainConfig(epochs=2, seed=1)), on_progress=events.append)
    train = [e for e in events if e.phase == "train"]
    slices = [e for e in events if e.phase == "slice"]
    assert train[0].completed == 0 and train[-1].finished and train[-1].completed == train[-1].total
    assert [e.description for e in slices if e.finished] == ["epoch 1", "epoch 2"]
    assert sum(e.finished for e in train) == 1
    assert all(e.status.startswith("loss ") for e in slices if e.completed)


def test_bars_follow_the_events_and_a_finished_slice_goes() -> None:
    progress = make_progress(console=Console(force_terminal=False, width=120))
    bars = ProgressBars(progress)
    bars(ProgressEvent("search", "search: start", 1, None))
    bars(ProgressEvent("slice", "try conv3", 0, 4))
    bars(ProgressEvent("slice", "try conv3", 4, 4, "loss 0.1", finished=True))
    bars(ProgressEvent("search", "search: binarize", 2, None, "binarized [conv3]"))
    tasks = progress.tasks
    assert [task.description for task in tasks] == ["search: binarize"]
    assert tasks[0].fields["status"] == "binarized [conv3]"
    bars(ProgressEvent("slice", "try conv4", 0, 2))
    assert [task.description for task in progress.tasks] == ["search: binarize", "try conv4"]


def test_a_log_gets_one_line_per_finished_phase_and_search_step() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with progress_bars(enabled=True, console=console) as on_progress:
        assert isinstance(on_progress, ProgressLines)
        on_progress(ProgressEvent("slice", "epoch 1", 0, 4))
        on_progress(ProgressEvent("slice", "epoch 1", 2, 4, "loss 0.9"))
        on_progress(ProgressEvent("slice", "epoch 1", 4, 4, "loss 0.5", finished=True))
        on_progress(ProgressEvent("train", "epochs", 4, 8, "loss 0.5  val 81.00%"))
        on_progress(ProgressEvent("search", "search: binarize", 2, None, "binarized [conv3]"))
    lines = console.file.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("] epoch 1 4/4 loss 0.5")
    assert lines[1].endswith("] epochs 4/8 loss 0.5  val 81.00%")
    assert lines[2].endswith("] search: binarize 2 binarized [conv3]")


def test_a_terminal_gets_bars() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bars(enabled=True, console=console) as on_progress:
        assert isinstance(on_progress, ProgressBars)
    with progress_bars(enabled=False, console=console) as on_progress:
        assert on_progress is None
