"""The HTML report's charts, drawn with matplotlib and inlined as SVG.

Three charts, each from the JSON document: per-layer storage before and after
(log scale), the search trajectory as validation accuracy against computed
storage with the budget floor (``val_before - budget``), and the estimator's
value per candidate layer.

The SVG is deterministic: text stays text (``svg.fonttype='none'``), element ids
come from a fixed ``svg.hashsalt`` and are prefixed per chart (so several charts
share one page without id clashes), and the date and creator metadata are left
out. matplotlib is the optional ``[plots]`` extra: without it
:func:`render_charts` returns ``None`` and the page shows tables only.
"""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Mapping
from typing import Any

from albsnn_compress.report import fmt

__all__ = ["render_charts", "charts_available"]

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "albsnn-compress-report",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_BEFORE = "#b8c2cc"
_BINARY = "#1f77b4"
_FLOAT = "#7f7f7f"
_KEPT = "#ff7f0e"
_BAD = "#d62728"
_WIDTH = 9.0
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _matplotlib() -> Any | None:
    try:
        return importlib.import_module("matplotlib")
    except ImportError:
        return None


def charts_available() -> bool:
    """Whether matplotlib (the ``[plots]`` extra) is installed."""
    return _matplotlib() is not None


def render_charts(report: Mapping[str, Any]) -> dict[str, str] | None:
    """Inline SVG charts keyed ``storage``, ``trajectory``, ``estimator``; ``None`` without matplotlib.

    ``trajectory`` and ``estimator`` are left out when the report has no search
    steps or no estimator values.
    """
    mpl = _matplotlib()
    if mpl is None:
        return None
    figure_cls = importlib.import_module("matplotlib.figure").Figure
    charts = {}
    with mpl.rc_context(_RC):
        charts["storage"] = _svg(_storage_figure(figure_cls, report), "storage")
        if report["trajectory"]:
            charts["trajectory"] = _svg(_trajectory_figure(figure_cls, report), "trajectory")
        if any(layer["estimate_raw"] is not None for layer in report["layers"]):
            charts["estimator"] = _svg(_estimator_figure(figure_cls, report), "estimator")
    return charts


def _svg(figure: Any, prefix: str) -> str:
    """The figure as an ``<svg>`` element fit for inlining in HTML."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # HTML puts inline <svg> in the SVG namespace itself; the xmlns URIs would only look like links.
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = text.replace('xlink:href="#', f'xlink:href="#{prefix}-').replace("url(#", f"url(#{prefix}-")
    return text.strip()


def _storage_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any:
    layers = report["layers"]
    labels = [fmt.short(layer["name"]) for layer in layers]
    height = 1.2 + 0.32 * len(layers)
    figure = figure_cls(figsize=(_WIDTH, height))
    ax = figure.add_subplot()
    positions = list(range(len(layers)))
    before = [max(layer["bytes_before"], 1e-3) for layer in layers]
    after = [max(layer["bytes_after"], 1e-3) for layer in layers]
    colours = [_BINARY if layer["binarized"] else _FLOAT for layer in layers]
    ax.barh([p - 0.2 for p in positions], before, height=0.4, color=_BEFORE, label="before (float32)")
    ax.barh([p + 0.2 for p in positions], after, height=0.4, color=colours, label="after")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("bytes (computed, log scale)")
    ax.set_title("Storage per layer: before (light) and after (blue = binarized)", loc="left")
    ax.legend(loc="lower right", frameon=False)
    return figure


def _trajectory_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any:
    steps = report["trajectory"]
    acc = report["accuracy"]
    figure = figure_cls(figsize=(_WIDTH, 4.2))
    ax = figure.add_subplot()
    xs = [step["storage_bytes"] / 1024 for step in steps]
    ys = [step["val_accuracy"] for step in steps]
    ax.plot(xs, ys, "-", color=_FLOAT, linewidth=1, zorder=1)
    below = [y < acc["val_floor"] for y in ys]
    for flag, colour, marker, label in ((False, _BINARY, "o", "step"), (True, _BAD, "X", "step below the floor")):
        points = [(x, y) for x, y, b in zip(xs, ys, below) if b == flag]
        if points:
            ax.scatter(*zip(*points), color=colour, marker=marker, s=30, zorder=2, label=label)
    labels: dict[tuple[float, float], list[str]] = {}
    for step, x, y in zip(steps, xs, ys):
        labels.setdefault((x, y), []).append(str(step["index"]))
    for (x, y), indices in labels.items():
        ax.annotate(",".join(indices), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(
        acc["val_floor"],
        color=_BAD,
        linestyle="--",
        linewidth=1,
        label=f"floor {fmt.percent(acc['val_floor'])} = val before − budget",
    )
    ax.axhline(
        acc["val_before"],
        color=_FLOAT,
        linestyle=":",
        linewidth=1,
        label=f"val before {fmt.percent(acc['val_before'])}",
    )
    ax.set_xlabel("model size, KiB (computed)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title("Search trajectory: validation accuracy vs storage (labels: step #)", loc="left")
    ax.legend(loc="best", frameon=False, fontsize=8)
    return figure


def _estimator_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any:
    layers = [layer for layer in report["layers"] if layer["estimate_raw"] is not None]
    figure = figure_cls(figsize=(_WIDTH, 1.2 + 0.32 * len(layers)))
    ax = figure.add_subplot()
    positions = list(range(len(layers)))
    values = [layer["estimate_raw"] for layer in layers]
    colours = [_BINARY if layer["binarized"] else _KEPT for layer in layers]
    ax.barh(positions, values, color=colours, height=0.6)
    for position, layer in zip(positions, layers):
        if layer["estimate_points"] is not None:
            ax.annotate(
                f"est. {fmt.points(layer['estimate_points'])}",
                (layer["estimate_raw"], position),
                textcoords="offset points",
                xytext=(4, -3),
                fontsize=8,
            )
    ax.set_yticks(positions, [fmt.short(layer["name"]) for layer in layers])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"{report['search']['estimator']} value (estimator units)")
    ax.set_title("Estimator value per candidate (blue = binarized, orange = kept)", loc="left")
    return figure
