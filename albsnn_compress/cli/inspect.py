"""``albsnn-compress inspect FILE.albsnn``: show a container's header and tensor table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from albsnn_compress.cli.terminal import plain, plain_line
from albsnn_compress.errors import ExportError
from albsnn_compress.files.output_set import OutputSetCheck, verify_output_set
from albsnn_compress.formats.c.plan import plan_model
from albsnn_compress.formats.container.file import container_summary, read_container
from albsnn_compress.formats.container.header import TensorEntry
from albsnn_compress.formats.nir.optional import is_nir_file, nir_summary
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["command"]


def _safe(value: object) -> Text:
    """File-controlled text, shown literally: no rich markup, control characters escaped (no terminal injection)."""
    return plain(value)


def _escaped_json(value: Any) -> str:
    """JSON with every character a terminal would interpret escaped (C1 controls, DEL, bidi overrides), still valid
    JSON."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)  # escapes C0 controls itself

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if code > 0xFFFF:  # a JSON escape is UTF-16: a surrogate pair
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
        return f"\\u{code:04x}"

    return re.sub(r"[^\n\x20-\x7e]", lambda m: m.group() if m.group().isprintable() else escape(m), text)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def add(label: str, value: str) -> None:
        table.add_row(_safe(label), _safe(value))

    input_shape = "x".join(map(str, summary["input_shape"]))
    add("file", f"{summary['file']} ({summary['file_bytes']} bytes, format version {summary['format_version']})")
    add(
        "architecture",
        f"{summary['architecture']}: {summary['layers']} layers, input {input_shape}, "
        f"{summary['num_classes']} classes, T={summary['timesteps']}",
    )
    add("binarized", ", ".join(summary["binarized"]) or "none")
    if summary["precisions"]:  # format version 2
        add("k-bit layers", ", ".join(f"{name} ({bits} bits)" for name, bits in summary["precisions"].items()))
    for kind, row in sorted(summary["kinds"].items()):
        add(f"{kind} tensors", f"{row['tensors']} tensors, {row['elements']} values, {row['bytes']} bytes")
    accuracy = ", ".join(f"{key} {value:.2f}%" for key, value in sorted(summary["accuracy"].items()))
    add("accuracy", accuracy or "not recorded")
    add("budget", "not recorded" if summary["budget"] is None else f"{summary['budget']:g} percentage points")
    add("source sha256", summary["source_sha256"] or "not recorded")
    if summary["class_names"] is not None:
        add("classes", ", ".join(summary["class_names"]))
    for key, value in sorted(summary["metadata"].items()):
        add(f"metadata {key}", value)
    return table


def _tensor_table(entries: list[TensorEntry]) -> Table:
    table = Table(
        title="tensors (offsets relative to the data section)",
        title_justify="left",
        box=None,
        padding=(0, 2, 0, 0),
        pad_edge=False,
    )
    table.add_column("name", overflow="fold")
    table.add_column("kind")
    table.add_column("shape")
    table.add_column("bytes", justify="right")
    table.add_column("offset", justify="right")
    table.add_column("crc32")
    for entry in entries:
        shape = "[" + ", ".join(map(str, entry.shape)) + "]"
        table.add_row(
            _safe(entry.name), _safe(entry.kind), shape, str(entry.nbytes), str(entry.offset), f"{entry.crc32:08x}"
        )
    return table


def _run_set_text(check: OutputSetCheck) -> str:
    """Whether the file is one of a complete compress run's outputs (its folder's manifest.json)."""
    if check.complete:
        return f"complete: {check.manifest} matches all {check.files} files"
    if check.manifest is None:
        return "no manifest.json beside it: not known to be part of one complete compress run"
    return check.problem or f"not one of the files {check.manifest} lists"


@click.command("inspect")
@click.argument(
    "container", metavar="FILE.albsnn|FILE.nir", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw header as JSON instead of tables.")
def command(container: Path, as_json: bool) -> None:
    """Show a container's architecture, accuracies, metadata and tensor table (a NIR file: its nodes)."""
    if is_nir_file(container):  # HDF5: a NIR graph
        _inspect_nir(container, as_json)
        return
    loaded = read_container(container)
    run_set = verify_output_set(container)
    if run_set.manifest is not None and run_set.problem is not None:  # a manifest its files do not match
        click.echo(f"warning: {plain_line(run_set.problem)}", err=True)
    if as_json:
        click.echo(_escaped_json(loaded.header))
        return
    console = Console()
    table = _summary_table(container_summary(loaded))
    table.add_row(_safe("run set"), _safe(_run_set_text(run_set)))
    table.add_row(_safe("C export"), _safe(_c_footprint(loaded.model)))
    console.print(table)
    console.print(_tensor_table(list(loaded.tensors.values())))


def _c_footprint(model: SpikingNet) -> str:
    """Flash and RAM bytes of the model's C export (``export --format c``), or why it has none."""
    try:
        plan = plan_model(model, weights="packed")
    except ExportError as exc:
        return f"not expressible: {exc}"
    return f"flash {plan.weight_bytes:,} bytes (const weights), RAM {plan.arena_bytes:,} bytes (one static arena)"


def _dims(shape: list[int] | None) -> str:
    """A NIR node's shape as ``CxHxW``; ``?`` where NIR's type inference gave none."""
    return "x".join(map(str, shape)) if shape is not None else "?"


def _inspect_nir(path: Path, as_json: bool) -> None:
    """A NIR file: NIR's own type check, the graph metadata, and every node's shapes and parameters."""
    summary = nir_summary(path)
    if as_json:
        click.echo(_escaped_json(summary))
        return
    meta = summary["metadata"]
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row(
        "file",
        _safe(
            f"{summary['file']} ({summary['file_bytes']} bytes, NIR {summary['nir_version'] or 'version not recorded'})"
        ),
    )
    head.add_row("NIR type check", _safe(summary["type_check"]))
    head.add_row("import", _safe(summary["import"]))
    if "albsnn_model" in meta:
        head.add_row(
            "written by",
            _safe(
                f"albsnn-compress {meta.get('albsnn_version', '?')}: {meta['albsnn_model']}, "
                f"T={meta.get('albsnn_timesteps', '?')}, dt={meta.get('albsnn_dt', '?')} s"
            ),
        )
        head.add_row(
            "binary layers",
            _safe(f"{meta.get('albsnn_binary_layers') or 'none'} (weights = scale[c] x signs, stored as float32)"),
        )
    Console().print(head)
    nodes = Table(
        title="nodes (shapes per sample, no batch axis)",
        title_justify="left",
        box=None,
        padding=(0, 2, 0, 0),
        pad_edge=False,
    )
    for column in ("name", "type", "input", "output", "parameters"):
        nodes.add_column(column, overflow="fold")
    for node in summary["nodes"]:
        params = ", ".join(f"{key} {value}" for key, value in node["params"].items())
        if node["metadata"].get("albsnn_binary") == "1":
            params += ", binary: +-scale per output channel"
        nodes.add_row(
            _safe(node["name"]), _safe(node["type"]), _dims(node["input"]), _dims(node["output"]), _safe(params)
        )
    Console(width=200).print(nodes)
    click.echo("edges: " + plain_line(", ".join(f"{a} -> {b}" for a, b in summary["edges"])))
