"""Figures for benchmark results: side-by-side panels drawn off screen (Agg) and saved as PNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Panel", "figure_panels"]

Panel = tuple[str, str, str]  # x label, y label, title


@contextmanager
def figure_panels(path: Path, size: tuple[float, float], *panels: Panel) -> Iterator[list[Any]]:
    """One axes per panel, side by side; labelled, gridded and saved to ``path`` (Agg, no screen) when the block
    ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(1, len(panels), figsize=size, dpi=120, squeeze=False)
    yield list(grid[0])
    for axes, (xlabel, ylabel, title) in zip(grid[0], panels):
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title, loc="left", fontsize=10)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
