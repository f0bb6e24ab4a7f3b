"""The report as Markdown (GitHub tables), rendered from the JSON document.

Every text, figures included, goes through :func:`~albsnn_compress.files.safe_text.markdown_text`:
control characters become visible escapes, and what Markdown or the HTML inside it would
interpret (``<script>``, ``|``, ``*``, ``$``, ``#``, a line break) is escaped, so a name read
from a file can neither add HTML, a heading or a table column nor end its cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from albsnn_compress.files.safe_text import markdown_text
from albsnn_compress.report import fmt
from albsnn_compress.report.tables import Table, report_tables

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    """A table cell: each line escaped; the lines of a cell (``"\\n"`` separates them) joined by ``<br>``."""
    return "<br>".join(markdown_text(line) for line in text.split("\n"))


def _table(table: Table) -> list[str]:
    lines = [f"## {markdown_text(table.title)}", ""]
    lines.append("| " + " | ".join(_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|")
    for index, row in enumerate(table.rows):
        emphasised = index < len(table.highlight) and table.highlight[index]
        cells = [_cell(c) for c in row]
        if emphasised and cells[0] and cells[0] == cells[0].strip():  # "** x**" or "****" would show the stars
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", markdown_text(table.note, line_start=True)]
    if table.details:
        lines += ["", markdown_text(table.details, line_start=True)]
    return lines + [""]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown document with the headline and every table (bold rows: binarized layers).

    Raises:
        ReportError: the report is larger than the renderer draws
            (:func:`~albsnn_compress.report.tables.check_renderable`).
    """
    tables = report_tables(report)
    lines = [
        f"# Storage report: {markdown_text(report['model']['name'])}",
        "",
        markdown_text(fmt.headline(report), line_start=True),
        "",
    ]
    for table in tables:
        lines += _table(table)
    lines.append(f"Report schema {markdown_text(str(report['schema']))} v{report['schema_version']}.")
    return "\n".join(lines) + "\n"
