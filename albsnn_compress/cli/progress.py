"""Progress for the commands: :class:`~albsnn_compress.progress.ProgressEvent` s drawn with rich.

The library only emits events; this is the one place that draws them, and only
on the process someone watches (the main rank, without ``--quiet``). On a
terminal they are live bars; written to a file or a pipe (a background run's
log) they are one plain line per finished epoch, slice and search step, since
bars would only appear when the run ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from albsnn_compress.progress import ProgressCallback, ProgressEvent

__all__ = ["make_progress", "ProgressBars", "ProgressLines", "progress_bars"]

TRANSIENT_PHASES = ("slice",)  # bars removed when their phase finishes; the others stay on screen


def make_progress(enabled: bool = True, console: Console | None = None) -> Progress:
    """A progress display with phase text, a bar, counts, elapsed and time left (renders nothing when disabled)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


class ProgressBars:
    """A ``ProgressCallback`` that keeps one rich bar per open phase."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        task = self.tasks.get(event.phase)
        if task is None:
            task = self.progress.add_task(event.description, total=event.total, status=event.status)
            self.tasks[event.phase] = task
        self.progress.update(
            task, description=event.description, total=event.total, completed=event.completed, status=event.status
        )
        if event.finished:
            del self.tasks[event.phase]
            if event.phase in TRANSIENT_PHASES:
                self.progress.remove_task(task)


class ProgressLines:
    """A ``ProgressCallback`` for logs: a line per epoch of training (with its validation accuracy),
    per search step and per finished finetuning slice, with the seconds elapsed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start_seconds = time.perf_counter()

    def __call__(self, event: ProgressEvent) -> None:
        if event.phase == "slice" and not event.finished:
            return  # a slice's steps: too many lines for a log
        if event.phase == "train" and event.completed == 0:
            return  # the run's first event says nothing yet
        count = f"{event.completed}/{event.total}" if event.total is not None else str(event.completed)
        elapsed_seconds = time.perf_counter() - self.start_seconds
        line = f"[{elapsed_seconds:7.0f} s] {event.description} {count} {event.status}".rstrip()
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_bars(enabled: bool, console: Console | None = None) -> Iterator[ProgressCallback | None]:
    """Progress while the block runs, as a callback for the library; ``None`` when disabled.

    Bars when ``console`` (default: standard output) is a terminal, else :class:`ProgressLines`.
    """
    if not enabled:
        yield None
        return
    console = console or Console()
    if not console.is_terminal:
        yield ProgressLines(console)
        return
    with make_progress(console=console) as progress:
        yield ProgressBars(progress)
