"""Progress reaches the caller as events; the command line draws them as bars."""

from __future__ import annotations

from rich.console import Console

from albsnn_compress.cli.progress import ProgressBars, make_progress
from albsnn_compress.progress import ProgressEvent
from albsnn_compress.train_model import TrainRequest, train_model
from albsnn_compress.training import TrainConfig


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
