"""The report's tables as plain rows of text, built once from the JSON document.

The terminal, Markdown and HTML forms all draw these same :class:`Table` objects,
so every figure reads the same in each form; a form only decides how a table
looks (and the terminal leaves out the columns marked ``wide``).

Every text read from the report reaches a cell through :func:`albsnn_compress.report.fmt.text`
(control characters escaped, one line), and a report larger than the renderer draws
(:data:`MAX_RENDER_LAYERS`, :data:`MAX_RENDER_STEPS`, :data:`MAX_RENDER_ITEMS`) is refused by
:func:`check_renderable` before anything is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from albsnn_compress.errors import ReportError
from albsnn_compress.report import fmt

__all__ = [
    "Table",
    "report_tables",
    "check_renderable",
    "BRIEF_TABLES",
    "MAX_RENDER_LAYERS",
    "MAX_RENDER_STEPS",
    "MAX_RENDER_ITEMS",
    "MAX_RENDER_CHARS",
    "MAX_LISTED_NAMES",
]

BRIEF_TABLES = ("storage", "accuracy", "layers")  # what a compress run shows at its end

MAX_RENDER_LAYERS = 4096
"""Layers the text, Markdown, HTML and terminal forms draw: the most a spec may have (``snn.spec``)."""
MAX_RENDER_STEPS = 4096
"""Search steps those forms draw: each step finetunes and measures, so a real search stops far below."""
MAX_RENDER_ITEMS = 1 << 16
"""Rows and lines those forms draw in all: layers, their tensors, steps, settings, timings and versions
(a report of 4096 layers and 4096 steps holds about 25,000)."""
MAX_RENDER_CHARS = 1 << 22
"""Characters the tables hold in all (cells, headings, notes): long texts in a report, however few, are drawn
in seconds (rich takes about 15 s per million characters)."""
MAX_LISTED_NAMES = 16
"""Layer names (or estimates) a cell lists (the run's candidates, a step's layers); beyond, ``(+N more)``: the
Layers table and the JSON hold them all."""
_JSON_ONLY = "the JSON form (--format json) shows any report"


def check_renderable(report: Mapping[str, Any]) -> None:
    """Refuse a report larger than the renderers draw, before anything is drawn.

    The JSON form has no such limit: only the tables (and the HTML page's charts) do. With at
    most :data:`MAX_LISTED_NAMES` names in a cell, these limits bound the time any form
    takes (seconds for plain text, Markdown and HTML; under a minute for rich on a terminal).

    Raises:
        ReportError: more than :data:`MAX_RENDER_LAYERS` layers, :data:`MAX_RENDER_STEPS` steps
            or :data:`MAX_RENDER_ITEMS` rows and lines in all, in one line.
    """
    layers, steps = len(report["layers"]), len(report["trajectory"])
    if layers > MAX_RENDER_LAYERS:
        raise ReportError(
            f"the report lists {layers} layers, more than the {MAX_RENDER_LAYERS} its tables draw; {_JSON_ONLY}"
        )
    if steps > MAX_RENDER_STEPS:
        raise ReportError(
            f"the report lists {steps} search steps, more than the {MAX_RENDER_STEPS} its tables draw; {_JSON_ONLY}"
        )
    items = layers + steps + len(report["search"]["config"]) + len(report["timings"]) + len(report["versions"])
    items += sum(len(layer["tensors"]) for layer in report["layers"])
    if items > MAX_RENDER_ITEMS:
        raise ReportError(
            f"the report's tables would hold {items} rows and lines (layers, tensors, steps, settings, timings, "
            f"versions), more than the {MAX_RENDER_ITEMS} the renderer draws; {_JSON_ONLY}"
        )


@dataclass(frozen=True)
class Table:
    """One table of a report.

    Attributes:
        key: stable identifier (``"layers"``), used as an HTML anchor.
        title: heading shown above it.
        columns: column headings.
        rows: cells as text, one list per row; ``"\\n"`` separates lines within a cell.
        align: ``"l"`` or ``"r"`` per column.
        highlight: per row, whether to emphasise it (binarized layers, the final step).
        wide: indices of columns the terminal leaves out to stay readable.
        note: a sentence shown under the table, or ``None``.
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    align: str
    highlight: list[bool] = field(default_factory=list)
    wide: frozenset[int] = frozenset()
    note: str | None = None


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """All tables of a report, in reading order (empty ones left out).

    Raises:
        ReportError: the report is larger than the tables draw (:func:`check_renderable`), or
            the tables would hold more than :data:`MAX_RENDER_CHARS` characters; before any is drawn.
    """
    check_renderable(report)
    tables = [
        _summary(report),
        _storage(report),
        _files(report),
        _accuracy(report),
        _layers(report),
        _trajectory(report),
        _timings(report),
        _settings(report),
        _versions(report),
    ]
    chars = sum(_chars(table) for table in tables)
    if chars > MAX_RENDER_CHARS:
        raise ReportError(
            f"the report's tables would hold {chars} characters, more than the {MAX_RENDER_CHARS} the renderer "
            f"draws (its names or texts are that long); {_JSON_ONLY}"
        )
    return [table for table in tables if table.rows]


def _chars(table: Table) -> int:
    """Characters of a table's text: heading, column names, cells and note."""
    cells = sum(len(cell) for row in table.rows for cell in row)
    return len(table.title) + sum(map(len, table.columns)) + cells + len(table.note or "")


def _summary(report: Mapping[str, Any]) -> Table:
    model, search = report["model"], report["search"]
    rows = [
        ["model", fmt.text(model["name"])],
        ["input shape", fmt.shape(model["input_shape"])],
        ["classes", fmt.MISSING if model["num_classes"] is None else str(model["num_classes"])],
        ["time steps", fmt.MISSING if model["timesteps"] is None else str(model["timesteps"])],
        ["strategy", fmt.text(search["strategy"])],
        ["estimator", fmt.text(search["estimator"])],
        ["budget (val top-1)", fmt.points(search["budget_points"])],
        ["seed", str(search["seed"])],
        ["finetune epochs", f"{search['finetune_epochs']:g}"],
        ["candidates", f"{len(search['candidates'])}: {fmt.names(search['candidates'], MAX_LISTED_NAMES)}"],
        ["binarized", f"{len(search['binarized'])}: {fmt.names(search['binarized'], MAX_LISTED_NAMES)}"],
    ]
    return Table("summary", "Run", ["Item", "Value"], rows, "ll")


def _storage(report: Mapping[str, Any]) -> Table:
    computed = report["storage"]["computed"]
    disk = report["storage"]["on_disk"]
    disk_ratio = report["storage"]["on_disk_ratio"]
    checkpoint = disk["input_checkpoint"]["bytes"]
    rows = [
        [
            "computed (bits / 8)",
            fmt.size(computed["bytes_before"]),
            fmt.size(computed["bytes_after"]),
            fmt.ratio(computed["ratio"]),
            fmt.percent(computed["saved_percent"]),
        ],
        [
            "computed, bits",
            fmt.count(computed["bits_before"]),
            fmt.count(computed["bits_after"]),
            fmt.NOT_APPLICABLE,
            fmt.NOT_APPLICABLE,
        ],
    ]
    outputs = [("container", "on disk: checkpoint -> .albsnn"), ("onnx", "on disk: checkpoint -> .onnx")]
    if "nir" in disk:
        outputs.append(("nir", "on disk: checkpoint -> .nir (float32)"))
    for key, label in outputs:
        after = disk[key]["bytes"]
        saved = 100.0 * (checkpoint - after) / checkpoint if checkpoint and after is not None else None
        rows.append([label, fmt.size(checkpoint), fmt.size(after), fmt.ratio(disk_ratio[key]), fmt.percent(saved)])
    c_export = report["storage"].get("c_export")
    if c_export is not None and c_export["refused"] is None:
        rows.append(
            [
                "C export: flash (weights) / RAM (arena)",
                fmt.NOT_APPLICABLE,
                f"{fmt.exact_bytes(c_export['flash_bytes'])} / {fmt.exact_bytes(c_export['ram_bytes'])}",
                fmt.NOT_APPLICABLE,
                fmt.NOT_APPLICABLE,
            ]
        )
    note = (
        f"Computed: numel × bits of every stored tensor (1-bit signs, float32 scales, biases, batch-norm tensors), "
        f"no file overhead; {fmt.count(computed['params'])} stored values, "
        f"{fmt.count(computed['binarized_weight_params'])} of them 1-bit in {computed['binarized_layers']} layers. "
        "On disk: the files' sizes (os.stat); n/a where a file was not written."
        + (f" {fmt.text(report['storage']['nir']['note'])}" if "nir" in report["storage"] else "")
    )
    return Table(
        "storage",
        "Storage: computed vs on disk",
        ["Measure", "Before", "After", "Ratio", "Saved"],
        rows,
        "lrrrr",
        [True, False, False, False],
        note=note,
    )


def _files(report: Mapping[str, Any]) -> Table:
    computed = report["storage"]["computed"]
    disk = report["storage"]["on_disk"]
    rows = []
    for key, label, reference in (
        ("input_checkpoint", "input checkpoint", computed["bytes_before"]),
        ("container", ".albsnn container", computed["bytes_after"]),
        ("onnx", "ONNX", computed["bytes_after"]),
        *([("nir", "NIR (float32, batch norm folded)", None)] if "nir" in disk else []),
    ):
        on_disk = disk[key]["bytes"]
        rows.append(
            [
                label,
                fmt.text(disk[key]["path"]) if disk[key]["path"] else fmt.MISSING,
                fmt.exact_bytes(on_disk),
                fmt.MISSING if reference is None else fmt.exact_bytes(reference),
                fmt.MISSING if on_disk is None or reference is None else fmt.exact_bytes(on_disk - reference),
            ]
        )
    return Table(
        "files",
        "Files",
        ["File", "Path", "On disk", "Computed", "On disk − computed"],
        rows,
        "llrrr",
        note="On disk − computed: headers, metadata, names and padding the file adds to the tensors.",
    )


def _accuracy(report: Mapping[str, Any]) -> Table:
    acc = report["accuracy"]
    paired = acc.get("paired", {})
    rows = [
        [
            label,
            fmt.percent(acc[f"{split}_before"]),
            fmt.percent(acc[f"{split}_after"]),
            fmt.points(acc[f"{split}_drop_points"]),
            *_paired_cells(paired.get(split)),
        ]
        for label, split in (("validation", "val"), ("test", "test"))
    ]
    verdict = "within budget" if acc["within_budget"] else "OVER budget"
    note = (
        f"Budget {fmt.points(report['search']['budget_points'])} of validation top-1 accuracy: floor "
        f"{fmt.percent(acc['val_floor'])}; measured drop {fmt.points(acc['val_drop_points'])}, {verdict}."
    )
    if "val" in paired:
        note += " " + _paired_note(paired["val"])
    level = f"{100 * paired['val']['interval_confidence']:g} % interval" if "val" in paired else "interval"
    return Table(
        "accuracy",
        "Accuracy (top-1)",
        ["Split", "Before", "After", "Drop", level, "Lost / gained"],
        rows,
        "lrrrrr",
        note=note,
    )


def _paired_cells(paired: Mapping[str, Any] | None) -> list[str]:
    if paired is None:
        return [fmt.MISSING, fmt.MISSING]
    return [fmt.interval(paired["interval_points"]), f"{paired['lost']} / {paired['gained']} of {paired['images']}"]


def _paired_note(paired: Mapping[str, Any]) -> str:
    """What one validation image is worth, and the bound decisions used when they used one."""
    note = f"One validation image is {paired['resolution_points']:.3f} pts; intervals are {fmt.text(paired['method'])}."
    if paired["decision_confidence"] is not None:
        note += (
            f" Decisions judged the drop's {100 * paired['decision_confidence']:g} % upper bound, now "
            f"{fmt.points(paired['upper_bound_points'])}."
        )
    return note


def _tensors_text(layer: Mapping[str, Any]) -> str:
    return "\n".join(f"{fmt.text(t['name'])} {t['elements']}×{t['precision_after']}b" for t in layer["tensors"])


def _decision(layer: Mapping[str, Any]) -> str:
    return f"{'binarized' if layer['binarized'] else 'kept'}: {fmt.text(layer['reason'])}"


def _measured(layer: Mapping[str, Any]) -> str:
    """The drops measured for a layer, each labelled: alone (oracle) or its group's increment (adaptive)."""
    parts = [
        f"{fmt.points(layer[key])} {label}"
        for key, label in (("measured_alone_points", "alone"), ("measured_increment_points", "group"))
        if layer[key] is not None
    ]
    return "\n".join(parts) or fmt.NOT_APPLICABLE


def _layers(report: Mapping[str, Any]) -> Table:
    columns = [
        "Layer",
        "Type",
        "Weight shape",
        "Values",
        "Precision",
        "Bits before",
        "Bits after",
        "Before",
        "After",
        "Stored after",
        "Estimate (raw)",
        "Estimate",
        "Measured drop",
        "Decision",
    ]
    rows, highlight = [], []
    for layer in report["layers"]:
        precision = (
            f"{layer['precision_before']} -> {layer['precision_after']}"
            if layer["binarized"]
            else str(layer["precision_before"])
        )
        rows.append(
            [
                fmt.short(layer["name"]),
                fmt.text(layer["type"]),
                fmt.shape(layer["weight_shape"]),
                fmt.count(layer["params"]),
                precision,
                fmt.count(layer["bits_before"]),
                fmt.count(layer["bits_after"]),
                fmt.size(layer["bytes_before"]),
                fmt.size(layer["bytes_after"]),
                _tensors_text(layer),
                fmt.number(layer["estimate_raw"]),
                fmt.NOT_APPLICABLE if layer["estimate_points"] is None else fmt.points(layer["estimate_points"]),
                _measured(layer),
                _decision(layer),
            ]
        )
        highlight.append(layer["binarized"])
    computed = report["storage"]["computed"]
    rows.append(
        [
            "total",
            "",
            "",
            fmt.count(computed["params"]),
            "",
            fmt.count(computed["bits_before"]),
            fmt.count(computed["bits_after"]),
            fmt.size(computed["bytes_before"]),
            fmt.size(computed["bytes_after"]),
            "",
            "",
            "",
            "",
            f"{computed['binarized_layers']} binarized",
        ]
    )
    highlight.append(False)
    note = (
        "Values: stored tensor elements (weights, biases, scales, batch-norm statistics). "
        "Stored after: elements × bits of each tensor kept for inference (weight_scale: the float32 scale of a 1-bit "
        "weight). "
        "Estimate (raw): the estimator's value in its own unit; Estimate: that value calibrated to points when the "
        "layer was decided. "
        "Measured drop in points: alone, with the layer binarized alone; group, the increment of the group it was "
        "tried in."
    )
    return Table("layers", "Layers", columns, rows, "lllrrrrrrlrrrl", highlight, frozenset({5, 6, 9}), note)


def _trajectory(report: Mapping[str, Any]) -> Table:
    columns = [
        "#",
        "Action",
        "Layers",
        "Binarized",
        "Estimates (pts)",
        "Estimates (raw)",
        "Val acc",
        "Drop",
        "95 % interval",
        "Storage",
        "Ratio",
        "Time",
    ]
    rows, highlight = [], []
    for step in report["trajectory"]:
        rows.append(
            [
                str(step["index"]),
                fmt.text(step["action"]),
                fmt.names(step["layers"], MAX_LISTED_NAMES) if step["layers"] else fmt.NOT_APPLICABLE,
                fmt.names(step["binarized"], MAX_LISTED_NAMES),
                fmt.estimates(step["estimates_points"], MAX_LISTED_NAMES),
                fmt.raw_estimates(step["estimates_raw"], MAX_LISTED_NAMES),
                fmt.percent(step["val_accuracy"]),
                fmt.points(step["drop_points"]),
                fmt.interval(step.get("interval_points")),
                fmt.size(step["storage_bytes"]),
                fmt.ratio(step["ratio"]),
                fmt.seconds(step["seconds"]),
            ]
        )
        highlight.append(step["action"] == "final")
    return Table(
        "trajectory",
        "Search trajectory",
        columns,
        rows,
        "rlllllrrrrrr",
        highlight,
        frozenset({5}),
        note="Each step after its change and finetuning; storage is computed (bits / 8). "
        "Estimates (pts): the raw values calibrated to points as the search stood at that step; - before its first "
        "measurement. "
        "95 % interval: of the drop, exact and paired on the validation images.",
    )


def _timings(report: Mapping[str, Any]) -> Table:
    rows = [[fmt.text(phase), fmt.seconds(value)] for phase, value in report["timings"].items()]
    return Table("timings", "Wall time", ["Phase", "Time"], rows, "lr")


def _settings(report: Mapping[str, Any]) -> Table:
    rows = [[fmt.text(key), fmt.setting(value)] for key, value in sorted(report["search"]["config"].items())]
    return Table("settings", "Settings", ["Setting", "Value"], rows, "ll")


def _versions(report: Mapping[str, Any]) -> Table:
    rows = [[fmt.text(name), fmt.text(version)] for name, version in report["versions"].items()]
    return Table("versions", "Versions", ["Package", "Version"], rows, "ll")
