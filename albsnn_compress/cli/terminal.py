"""The report as rich tables on the terminal: the end of a compress run and ``albsnn-compress report``.

The tables are the report's own (:func:`albsnn_compress.report.tables.report_tables`);
this module only draws them. The library's plain-text form of the same tables is
:func:`albsnn_compress.report.render_text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from albsnn_compress.report import fmt
from albsnn_compress.report.tables import BRIEF_TABLES, Table, report_tables

__all__ = ["render_terminal"]


def _rich_table(table: Table) -> RichTable:
    keep = [i for i in range(len(table.columns)) if i not in table.wide]
    out = RichTable(title=table.title, title_justify="left", caption=table.note, caption_justify="left")
    for i in keep:
        right = table.align[i] == "r"
        out.add_column(table.columns[i], justify="right" if right else "left", no_wrap=right)
    for index, row in enumerate(table.rows):
        emphasised = index < len(table.highlight) and table.highlight[index]
        out.add_row(*(row[i] for i in keep), style="bold cyan" if emphasised else None)
    return out


def render_terminal(report: Mapping[str, Any], console: Console, *, brief: bool = False) -> None:
    """Print the report's headline and tables on ``console``.

    Args:
        report: a report document (see :mod:`albsnn_compress.report.schema`).
        console: where to print.
        brief: only storage, accuracy and layers (what a compress run shows at its end).
    """
    console.print(fmt.headline(report), style="bold", markup=False, highlight=False)
    for table in report_tables(report):
        if brief and table.key not in BRIEF_TABLES:
            continue
        console.print(_rich_table(table))
