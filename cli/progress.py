"""Progress bars for the commands: :class:`~albsnn_compress.progress.ProgressEvent` s drawn with rich.

The library only emits events; this is the one place that draws them, and only
on the process someone watches (the main rank, without ``--quiet``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from albsnn_compress.progress import ProgressCallback, ProgressEvent

__all__ = ["make_progress", "ProgressBars", "progress_bars"]

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
        self.progress.update(task, description=event.description, total=event.total, completed=event.completed, status=event.status)
        if event.finished:
            del self.tasks[event.phase]
            if event.phase in TRANSIENT_PHASES:
                self.progress.remove_task(task)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[ProgressCallback | None]:
    """Bars on the terminal while the block runs, as a callback for the library; ``None`` when disabled."""
    if not enabled:
        yield None
        return
    with make_progress() as progress:
        yield ProgressBars(progress)
