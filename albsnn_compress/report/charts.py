"""The HTML report's charts, drawn with matplotlib and inlined as SVG.

Three charts, each from the JSON document: per-layer storage before and after
(log scale), the search trajectory as validation accuracy against computed
storage with the budget floor (``val_before - budget``), and the estimator's
value per candidate layer.

Every text drawn is literal: matplotlib's mathtext never parses a name (``parse_math=False``
on every text that holds one, ``text.usetex`` off), so a layer called ``$\\frac{a}{b}$``
shows as it is written instead of crashing or recursing; names are shown through
:func:`~albsnn_compress.files.safe_text.visible` and cut to :data:`MAX_LABEL_CHARS`.
Degenerate data degrade the chart, never the page: a value that is not finite is left
out, storage that is zero somewhere is drawn on a linear axis (log needs positive values,
the axis label says which), and a chart with nothing to draw is left out. A chart of more
than :data:`MAX_CHART_LAYERS` layers or :data:`MAX_CHART_STEPS` steps is left out too
(matplotlib would take minutes); :func:`left_out_charts` says why, and the tables hold
every figure.

The SVG is deterministic: text stays text (``svg.fonttype='none'``), element ids
come from a fixed ``svg.hashsalt`` and are prefixed per chart (so several charts
share one page without id clashes), and the date and creator metadata are left
out. matplotlib is the optional ``[plots]`` extra: without it
:func:`render_charts` returns ``None`` and the page shows tables only.
"""

from __future__ import annotations

import importlib
import io
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from albsnn_compress.files.safe_text import shorten, visible
from albsnn_compress.report import fmt
from albsnn_compress.report.tables import check_renderable

__all__ = [
    "render_charts",
    "charts_available",
    "left_out_charts",
    "MAX_CHART_LAYERS",
    "MAX_CHART_STEPS",
    "MAX_LABEL_CHARS",
    "MAX_CHART_VALUE",
]

MAX_CHART_LAYERS = 256
"""Bars of the storage and estimator charts; a larger model gets its tables only (about 2 s of drawing here)."""
MAX_CHART_STEPS = 2048
"""Points of the trajectory chart; a longer search gets its table only."""
MAX_STEP_LABELS = 64
"""Points of the trajectory chart that carry their step numbers; beyond, the points alone (the table numbers them)."""
MAX_LABEL_CHARS = 40
"""Characters of a layer name on a chart's axis (the tables show it whole)."""
MAX_CHART_VALUE = 1e300
"""The largest magnitude a chart draws: an axis spanning two figures near the float limit overflows."""

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "albsnn-compress-report",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.usetex": False,  # a user's matplotlibrc must not send names to LaTeX
}
_LITERAL = {"parse_math": False}
"""Text properties of every text that holds a name: no mathtext."""
_BEFORE = "#b8c2cc"
_BINARY = "#1f77b4"
_KBIT = "#17becf"
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

    A chart is left out when it has nothing to draw (no layers, no search steps, no finite
    estimator values) or more than it draws (:func:`left_out_charts` says which and why).

    Raises:
        ReportError: the report is larger than the renderers draw at all
            (:func:`albsnn_compress.report.tables.check_renderable`).
    """
    check_renderable(report)
    mpl = _matplotlib()
    if mpl is None:
        return None
    figure_cls = importlib.import_module("matplotlib.figure").Figure
    too_many = left_out_charts(report)
    drawers = {"storage": _storage_figure, "trajectory": _trajectory_figure, "estimator": _estimator_figure}
    charts = {}
    # Finite values near the float limits make numpy overflow inside matplotlib's tick arithmetic, and a
    # name in a script DejaVu lacks has no glyph to measure: the chart still draws (the SVG keeps text as
    # text, which the browser shows in its own fonts), and neither warning says anything about the report.
    with mpl.rc_context(_RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        for name, draw in drawers.items():
            if name in too_many:
                continue
            figure = draw(figure_cls, report)
            if figure is not None:
                charts[name] = _svg(figure, name)
    return charts


def left_out_charts(report: Mapping[str, Any]) -> dict[str, str]:
    """Chart name -> why it is not drawn: more layers or steps than it draws, or a figure it cannot scale."""
    layers, steps = report["layers"], report["trajectory"]
    estimated = [layer["estimate_raw"] for layer in layers if _finite(layer["estimate_raw"])]
    acc = report["accuracy"]
    figures = {
        "storage": [value for layer in layers for value in (layer["bytes_before"], layer["bytes_after"])],
        "trajectory": [acc["val_floor"], acc["val_before"]]
        + [value for step in steps for value in (step["storage_bytes"], step["val_accuracy"])],
        "estimator": estimated,
    }
    why = {}
    if len(layers) > MAX_CHART_LAYERS:
        why["storage"] = f"{len(layers)} layers, more than the {MAX_CHART_LAYERS} a chart draws"
    if len(estimated) > MAX_CHART_LAYERS:
        why["estimator"] = f"{len(estimated)} estimated layers, more than the {MAX_CHART_LAYERS} a chart draws"
    if len(steps) > MAX_CHART_STEPS:
        why["trajectory"] = f"{len(steps)} search steps, more than the {MAX_CHART_STEPS} a chart draws"
    for name, values in figures.items():
        if name not in why and any(_finite(value) and abs(value) > MAX_CHART_VALUE for value in values):
            why[name] = f"a figure beyond ±{MAX_CHART_VALUE:g}, more than a chart's axis can scale"
    return why


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _label(name: str) -> str:
    """A layer name for an axis: control characters escaped, cut to :data:`MAX_LABEL_CHARS`."""
    return shorten(fmt.short(name), MAX_LABEL_CHARS)


def _literal_legend(ax: Any, **kwargs: Any) -> None:
    legend = ax.legend(**kwargs)
    for text in legend.get_texts():
        text.set_parse_math(False)


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


def _storage_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any | None:
    layers = report["layers"]
    before = _bars(layers, "bytes_before")
    after = _bars(layers, "bytes_after")
    drawn = [value for _, value in before + after]
    if not drawn:  # no layers, or no finite size: nothing to draw
        return None
    log = min(drawn) > 0  # log needs positive values: a size of 0, and the axis is linear
    figure = figure_cls(figsize=(_WIDTH, 1.2 + 0.32 * len(layers)))
    ax = figure.add_subplot()
    positions = list(range(len(layers)))
    if before:
        ax.barh(
            [i - 0.2 for i, _ in before], [v for _, v in before], height=0.4, color=_BEFORE, label="before (float32)"
        )
    if after:
        colours = [_after_colour(layers[i], _FLOAT) for i, _ in after]
        ax.barh([i + 0.2 for i, _ in after], [v for _, v in after], height=0.4, color=colours, label="after")
    ax.set_yticks(positions, [_label(layer["name"]) for layer in layers], **_LITERAL)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlabel("bytes (computed, log scale)")
    else:
        ax.set_xlabel("bytes (computed, linear scale: a size of 0, which a log scale cannot show)")
    if len(drawn) < 2 * len(layers):
        ax.set_xlabel(ax.get_xlabel() + "; values that are not finite are left out", **_LITERAL)
    ax.set_title("Storage per layer: before (light) and after (blue = binarized, cyan = 2-8 bits)", loc="left")
    _literal_legend(ax, loc="lower right", frameon=False)
    return figure


def _after_colour(layer: Mapping[str, Any], unchanged: str) -> str:
    """Blue for a binarized layer, cyan for one stored at 2 to 8 bits, ``unchanged`` for the rest."""
    if layer["binarized"]:
        return _BINARY
    return _KBIT if layer["precision_after"] < layer["precision_before"] else unchanged


def _bars(layers: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """``(position, value)`` of each layer whose ``key`` is finite (a NaN or infinite bar is left out)."""
    return [(i, float(layer[key])) for i, layer in enumerate(layers) if _finite(layer[key])]


def _trajectory_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any | None:
    acc = report["accuracy"]
    points = [
        (step, step["storage_bytes"] / 1024, step["val_accuracy"])
        for step in report["trajectory"]
        if _finite(step["storage_bytes"]) and _finite(step["val_accuracy"])
    ]
    if not points:
        return None
    steps = [step for step, _, _ in points]
    xs = [x for _, x, _ in points]
    ys = [y for _, _, y in points]
    figure = figure_cls(figsize=(_WIDTH, 4.2))
    ax = figure.add_subplot()
    ax.plot(xs, ys, "-", color=_FLOAT, linewidth=1, zorder=1)
    floor = acc["val_floor"] if _finite(acc["val_floor"]) else None
    below = [floor is not None and y < floor for y in ys]
    for flag, colour, marker, label in ((False, _BINARY, "o", "step"), (True, _BAD, "X", "step below the floor")):
        chosen = [(x, y) for x, y, b in zip(xs, ys, below) if b == flag]
        if chosen:
            ax.scatter(*zip(*chosen), color=colour, marker=marker, s=30, zorder=2, label=label)
    labels: dict[tuple[float, float], list[str]] = {}
    for step, x, y in zip(steps, xs, ys):
        labels.setdefault((x, y), []).append(str(step["index"]))
    if len(labels) <= MAX_STEP_LABELS:
        for (x, y), indices in labels.items():
            ax.annotate(
                shorten(",".join(indices), MAX_LABEL_CHARS),
                (x, y),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
                **_LITERAL,
            )
    if floor is not None:
        ax.axhline(
            floor,
            color=_BAD,
            linestyle="--",
            linewidth=1,
            label=f"floor {fmt.percent(floor)} = val before − budget",
        )
    if _finite(acc["val_before"]):
        ax.axhline(
            acc["val_before"],
            color=_FLOAT,
            linestyle=":",
            linewidth=1,
            label=f"val before {fmt.percent(acc['val_before'])}",
        )
    ax.set_xlabel("model size, KiB (computed)")
    ax.set_ylabel("validation accuracy, %")
    numbered = "labels: step #" if len(labels) <= MAX_STEP_LABELS else "too many steps to number them"
    ax.set_title(f"Search trajectory: validation accuracy vs storage ({numbered})", loc="left")
    _literal_legend(ax, loc="best", frameon=False, fontsize=8)
    return figure


def _estimator_figure(figure_cls: Any, report: Mapping[str, Any]) -> Any | None:
    layers = [layer for layer in report["layers"] if _finite(layer["estimate_raw"])]
    if not layers:
        return None
    figure = figure_cls(figsize=(_WIDTH, 1.2 + 0.32 * len(layers)))
    ax = figure.add_subplot()
    positions = list(range(len(layers)))
    values = [float(layer["estimate_raw"]) for layer in layers]
    colours = [_after_colour(layer, _KEPT) for layer in layers]
    ax.barh(positions, values, color=colours, height=0.6)
    for position, layer in zip(positions, layers):
        if _finite(layer["estimate_points"]):
            ax.annotate(
                f"est. {fmt.points(layer['estimate_points'])}",
                (layer["estimate_raw"], position),
                textcoords="offset points",
                xytext=(4, -3),
                fontsize=8,
                **_LITERAL,
            )
    ax.set_yticks(positions, [_label(layer["name"]) for layer in layers], **_LITERAL)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    estimator = shorten(visible(report["search"]["estimator"]), MAX_LABEL_CHARS)
    ax.set_xlabel(f"{estimator} value (estimator units)", **_LITERAL)
    ax.set_title("Estimator value per candidate (blue = binarized, cyan = 2-8 bits, orange = kept)", loc="left")
    return figure
