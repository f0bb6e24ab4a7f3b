"""The report as Markdown (GitHub tables), rendered from the JSON document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from albsnn_compress.report import fmt
from albsnn_compress.report.tables import Table, report_tables

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    """Escape what would break a table cell; line breaks within a cell become ``<br>``."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", "<br>")


def _table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    lines.append("| " + " | ".join(_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|")
    for index, row in enumerate(table.rows):
        emphasised = index < len(table.highlight) and table.highlight[index]
        cells = [_cell(c) for c in row]
        if emphasised:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return lines + [""]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown document with the headline and every table (bold rows: binarized layers)."""
    lines = [f"# Storage report: {report['model']['name']}", "", fmt.headline(report), ""]
    for table in report_tables(report):
        lines += _table(table)
    lines.append(f"Report schema {report['schema']} v{report['schema_version']}.")
    return "\n".join(lines) + "\n"
