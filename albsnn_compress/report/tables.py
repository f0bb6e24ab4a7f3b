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

BRIEF_TABLES = ("storage", "accuracy", "layers", "cost", "operations")  # what a compress run shows at its end

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
    operations = report.get("operations")
    counted = len(operations["input_model"]["layers"]) if operations is not None else 0
    if max(layers, counted) > MAX_RENDER_LAYERS:
        raise ReportError(
            f"the report lists {max(layers, counted)} layers, more than the {MAX_RENDER_LAYERS} its tables draw; "
            f"{_JSON_ONLY}"
        )
    if steps > MAX_RENDER_STEPS:
        raise ReportError(
            f"the report lists {steps} search steps, more than the {MAX_RENDER_STEPS} its tables draw; {_JSON_ONLY}"
        )
    items = layers + steps + len(report["search"]["config"]) + len(report["timings"]) + len(report["versions"])
    items += sum(len(layer["tensors"]) for layer in report["layers"])
    items += counted + (len(operations["definitions"]) if operations is not None else 0)
    if items > MAX_RENDER_ITEMS:
        raise ReportError(
            f"the report's tables would hold {items} rows and lines (layers, tensors, steps, settings, timings, "
            f"versions, operations), more than the {MAX_RENDER_ITEMS} the renderer draws; {_JSON_ONLY}"
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
        details: sentences shown after the note in Markdown and HTML only (definitions the JSON holds
            too); the terminal and plain text leave them out to stay readable, like the ``wide`` columns.
    """

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    align: str
    highlight: list[bool] = field(default_factory=list)
    wide: frozenset[int] = frozenset()
    note: str | None = None
    details: str | None = None


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
        _cost(report),
        _operations(report),
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
    return len(table.title) + sum(map(len, table.columns)) + cells + len(table.note or "") + len(table.details or "")


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
    fewer_bits = _fewer_bits(report["layers"])
    if fewer_bits:  # only a search over precisions stores layers at 2 to 8 bits
        listed = fmt.names([f"{layer['name']}:{layer['precision_after']}" for layer in fewer_bits], MAX_LISTED_NAMES)
        rows.append(["2-8 bits", f"{len(fewer_bits)}: {listed}"])
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
    fewer_bits = _fewer_bits(report["layers"])
    k_bit = (
        f", {fmt.count(sum(layer['weight_params'] for layer in fewer_bits))} at 2-8 bits in {len(fewer_bits)} layers"
        if fewer_bits
        else ""
    )
    note = (
        f"Computed: numel × bits of every stored tensor (1-bit signs, k-bit codes, float32 scales, biases, "
        f"batch-norm tensors), no file overhead; {fmt.count(computed['params'])} stored values, "
        f"{fmt.count(computed['binarized_weight_params'])} of them 1-bit in {computed['binarized_layers']} layers"
        f"{k_bit}. On disk: the files' sizes (os.stat); n/a where a file was not written."
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
    if "control" in paired:  # what finetuning alone cost: the same validation images, a float model
        control = paired["control"]
        after = acc["val_before"] - control["drop_points"]
        rows.append(
            [
                "validation, float control",
                fmt.percent(acc["val_before"]),
                fmt.percent(after),
                fmt.points(control["drop_points"]),
                *_paired_cells(control),
            ]
        )
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


def _total_decision(binarized: int, fewer_bits: int) -> str:
    return f"{binarized} binarized" + (f", {fewer_bits} at 2-8 bits" if fewer_bits else "")


def _fewer_bits(layers: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The layers stored at 2 to 8 bits: below their input precision, not binarized."""
    return [layer for layer in layers if not layer["binarized"] and _changed_precision(layer)]


def _changed_precision(layer: Mapping[str, Any]) -> bool:
    return layer["precision_before"] is not None and layer["precision_after"] < layer["precision_before"]


def _decision(layer: Mapping[str, Any]) -> str:
    """What became of the layer (binarized, ``k-bit`` or kept), then why; a reason the search already
    labelled with the layer's bits (``8-bit: recovered ...``) is not labelled twice."""
    reason = fmt.text(layer["reason"])
    if layer["binarized"]:
        return f"binarized: {reason}"
    if not _changed_precision(layer):
        return f"kept: {reason}"
    label = f"{layer['precision_after']}-bit"
    return reason if reason.startswith(f"{label}: ") else f"{label}: {reason}"


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
            if layer["binarized"] or _changed_precision(layer)
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
        highlight.append(layer["binarized"] or _changed_precision(layer))
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
            _total_decision(computed["binarized_layers"], len(_fewer_bits(report["layers"]))),
        ]
    )
    highlight.append(False)
    note = (
        "Values: stored tensor elements (weights, biases, scales, batch-norm statistics). "
        "Stored after: elements × bits of each tensor kept for inference (weight_scale: the float32 per-channel "
        "scale of a 1- to 8-bit weight). "
        "Estimate (raw): the estimator's value in its own unit; Estimate: that value calibrated to points when the "
        "layer was decided. "
        "Measured drop in points: alone, with the layer binarized alone; group, the increment of the group it was "
        "tried in."
    )
    return Table("layers", "Layers", columns, rows, "lllrrrrrrlrrrl", highlight, frozenset({5, 6, 9}), note)


def _definitions(operations: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The document's own definitions of ``keys`` (those it has), one after the other."""
    definitions = operations["definitions"]
    return " ".join(fmt.text(definitions[key]) for key in keys if key in definitions)


def _cost(report: Mapping[str, Any]) -> Table:
    """Both models' totals per inference side by side, with the saving in percent (empty before schema version 3)."""
    operations = report.get("operations")
    if operations is None:
        return Table("cost", "Cost per inference", [], [], "")
    before, after = operations["input_model"]["total"], operations["compressed_model"]["total"]
    saved, energy = operations["saved_percent"], operations["energy"]
    dense_saved = 100.0 * (before["dense"] - after["dense"]) / before["dense"] if before["dense"] else None

    rows = [
        [label, form(before[key]), form(after[key]), fmt.percent(saved[key])]
        for label, key, form in (
            ("synaptic operations (AC + MAC)", "synaptic_ops", fmt.operations),
            ("accumulates (AC)", "ac", fmt.operations),
            ("multiply-accumulates (MAC)", "mac", fmt.operations),
        )
    ]
    rows.append(
        ["dense synaptic operations", fmt.count(before["dense"]), fmt.count(after["dense"]), fmt.percent(dense_saved)]
    )
    rows.append(
        [
            f"energy, {fmt.text(energy['label'])}",
            fmt.energy(before["energy_pj"]),
            fmt.energy(after["energy_pj"]),
            fmt.percent(saved["energy_pj"]),
        ]
    )
    rows += [
        [label, fmt.size(before[key]), fmt.size(after[key]), fmt.percent(saved[key])]
        for label, key in (
            ("weight bytes read", "weight_bytes"),
            ("activation bytes", "activation_bytes"),
            ("bytes moved", "bytes_moved"),
        )
    ]
    rows += [
        [label, fmt.operations(before[key]), fmt.operations(after[key]), fmt.NOT_APPLICABLE]
        for label, key in (
            ("neuron updates (not in AC, MAC or energy)", "neuron_updates"),
            ("batch-norm elements (not in AC, MAC or energy)", "batch_norm_elements"),
        )
    ]
    note = (
        f"Measured on the first {operations['images']} images of the {fmt.text(operations['split'])} split "
        f"(at most {operations['image_limit']}), both models on the same images; per inference: one image, all its "
        "time steps. AC: accumulates (input spikes); MAC: multiply-accumulates (analog input); only nonzero inputs "
        f"count. Energy, {fmt.text(energy['label'])}: AC × {energy['ac_pj']:g} pJ + MAC × {energy['mac_pj']:g} pJ, "
        "arithmetic only. Definitions: docs/report.md, and operations.definitions in report.json."
    )
    details = f"Energy constants: {fmt.text(energy['source'])}. " + _definitions(
        operations, ("ac", "mac", "excluded", "bytes_moved", "neurobench")
    )
    return Table(
        "cost",
        "Cost per inference: input vs compressed model",
        ["Measure", "Input model", "Compressed", "Saved"],
        rows,
        "lrrr",
        [True] + [False] * (len(rows) - 1),
        note=note,
        details=details,
    )


def _operations(report: Mapping[str, Any]) -> Table:
    """Each weighted layer's operations per inference, input model -> compressed model (empty before version 3)."""
    operations = report.get("operations")
    if operations is None:
        return Table("operations", "Operations per layer", [], [], "")
    columns = ["Layer", "Input", "Weights", "Steps", "Dense", "Rate", "AC", "MAC", "Energy", "Weight bytes"]
    rows, highlight = [], []
    pairs = zip(operations["input_model"]["layers"], operations["compressed_model"]["layers"])
    for before, after in pairs:
        rows.append(
            [
                fmt.short(after["name"]),
                fmt.change(before["input"], after["input"], fmt.text),
                fmt.change(before["weight_bits"], after["weight_bits"], str),
                fmt.change(before["steps"], after["steps"], str),
                fmt.change(before["dense"], after["dense"], fmt.count),
                fmt.change(before["input_rate"], after["input_rate"], fmt.rate),
                fmt.change(before["ac"], after["ac"], fmt.operations),
                fmt.change(before["mac"], after["mac"], fmt.operations),
                fmt.change(before["energy_pj"], after["energy_pj"], fmt.energy),
                fmt.change(before["weight_bytes"], after["weight_bytes"], fmt.size),
            ]
        )
        highlight.append(after["weight_bits"] < before["weight_bits"])
    before, after = operations["input_model"]["total"], operations["compressed_model"]["total"]
    rows.append(
        [
            "total",
            "",
            "",
            "",
            fmt.change(before["dense"], after["dense"], fmt.count),
            "",
            fmt.change(before["ac"], after["ac"], fmt.operations),
            fmt.change(before["mac"], after["mac"], fmt.operations),
            fmt.change(before["energy_pj"], after["energy_pj"], fmt.energy),
            fmt.change(before["weight_bytes"], after["weight_bytes"], fmt.size),
        ]
    )
    highlight.append(False)
    note = (
        "Per inference; a cell reads input model -> compressed model where the two differ. Input: spikes (0 and 1 "
        "only), analog, or mixed (some images each). Weights: bits per weight. Rate: the share of nonzero input "
        "elements (the input spike rate over spikes). Energy: "
        f"{fmt.text(operations['energy']['label'])}."
    )
    details = _definitions(operations, ("dense", "effective", "rate", "binary_weights"))
    return Table(
        "operations",
        "Operations per layer",
        columns,
        rows,
        "lllrrrrrrr",
        highlight,
        frozenset({3, 8, 9}),
        note,
        details,
    )


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
