"""Rich progress bars, shown only where someone is watching (the main process)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["make_progress"]


def make_progress(enabled: bool = True, console: Console | None = None) -> Progress:
    """A progress display with phase text, a bar, counts, elapsed and time left.

    Disabled (renders nothing) on non-main ranks and in library calls that ask for quiet.
    """
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
