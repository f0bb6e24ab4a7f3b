"""The report as plain text: the terminal's tables, aligned in columns, for a file or a log.

No colours and no box drawing, so the text diffs well; the columns the terminal
leaves out (``Table.wide``) are left out here too. Drawn with rich on a
terminal, the same tables are ``albsnn_compress.cli.terminal.render_terminal``.

Every line passes through :func:`~albsnn_compress.files.safe_text.visible`, so a name read from
a file cannot drive the terminal that shows the text (``cat report.txt``): an escape sequence
is written out as ``\\x1b[2J``, a bidi override as ``\\u202e``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from albsnn_compress.files.safe_text import visible
from albsnn_compress.report import fmt
from albsnn_compress.report.tables import BRIEF_TABLES, Table, report_tables

__all__ = ["render_text"]

_GAP = "  "


def _table_lines(table: Table, width: int) -> list[str]:
    keep = [i for i in range(len(table.columns)) if i not in table.wide]
    grid = [[_lines(table.columns[i]) for i in keep]] + [[_lines(row[i]) for i in keep] for row in table.rows]
    widths = [max(len(line) for row in grid for line in row[column]) for column in range(len(keep))]
    lines = [visible(table.title)]
    for number, row in enumerate(grid):
        for k in range(max(len(cell) for cell in row)):
            parts = []
            for column, cell in enumerate(row):
                text = cell[k] if k < len(cell) else ""
                parts.append(
                    text.rjust(widths[column]) if table.align[keep[column]] == "r" else text.ljust(widths[column])
                )
            lines.append(_GAP.join(parts).rstrip())
        if number == 0:
            lines.append(_GAP.join("-" * w for w in widths))
    if table.note:
        lines += textwrap.wrap(visible(table.note), width)
    return lines


def _lines(cell: str) -> list[str]:
    """The lines of a cell (``"\\n"`` separates them), each with its control characters escaped."""
    return [visible(line) for line in cell.split("\n")]


def render_text(report: Mapping[str, Any], *, width: int = 140, brief: bool = False) -> str:
    """The headline and the tables as plain text.

    Args:
        report: a report document (see :mod:`albsnn_compress.report.schema`).
        width: where the headline and the notes wrap (tables keep their full width).
        brief: only storage, accuracy and layers (what a compress run shows at its end).

    Raises:
        ReportError: the report is larger than the renderer draws
            (:func:`~albsnn_compress.report.tables.check_renderable`).
    """
    tables = report_tables(report)
    lines = textwrap.wrap(visible(fmt.headline(report)), width)
    for table in tables:
        if brief and table.key not in BRIEF_TABLES:
            continue
        lines += ["", *_table_lines(table, width)]
    return "\n".join(lines) + "\n"
