"""The report as rich tables on the terminal: the end of a compress run and ``albsnn-compress report``.

The tables are the report's own (:func:`albsnn_compress.report.tables.report_tables`);
this module only draws them. The library's plain-text form of the same tables is
:func:`albsnn_compress.report.render_text`.

Text read from a file reaches rich only as :func:`plain`: a ``rich.text.Text`` (so ``[bold]``
in a name is not markup) whose control characters are visible escapes (so an escape sequence
in a name cannot retitle or clear the terminal). :func:`plain_line` is the same for
``click.echo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from albsnn_compress.files.safe_text import visible
from albsnn_compress.report import fmt
from albsnn_compress.report.tables import BRIEF_TABLES, Table, report_tables

__all__ = ["render_terminal", "plain", "plain_line"]


def plain_line(text: object) -> str:
    """``str(text)`` for a terminal: every control character (ESC, C1, bidi overrides, newlines) a visible escape."""
    return visible(str(text))


def plain(text: object, style: str = "") -> Text:
    """``text`` for rich: literal (no markup, no highlighting) and with its control characters escaped."""
    return Text(plain_line(text), style=style)


def _cell(text: str) -> Text:
    """A cell: each of its lines (``"\\n"`` separates them) escaped, the line breaks kept."""
    return Text("\n".join(plain_line(line) for line in text.split("\n")))


def _rich_table(table: Table) -> RichTable:
    keep = [i for i in range(len(table.columns)) if i not in table.wide]
    out = RichTable(
        title=plain(table.title),
        title_justify="left",
        caption=plain(table.note) if table.note else None,
        caption_justify="left",
    )
    for i in keep:
        right = table.align[i] == "r"
        out.add_column(_cell(table.columns[i]), justify="right" if right else "left", no_wrap=right)
    for index, row in enumerate(table.rows):
        emphasised = index < len(table.highlight) and table.highlight[index]
        out.add_row(*(_cell(row[i]) for i in keep), style="bold cyan" if emphasised else None)
    return out


def render_terminal(report: Mapping[str, Any], console: Console, *, brief: bool = False) -> None:
    """Print the report's headline and tables on ``console``.

    Args:
        report: a report document (see :mod:`albsnn_compress.report.schema`).
        console: where to print.
        brief: only storage, accuracy and layers (what a compress run shows at its end).

    Raises:
        ReportError: the report is larger than the renderer draws
            (:func:`~albsnn_compress.report.tables.check_renderable`), before anything is printed.
    """
    tables = report_tables(report)  # refuses a report too large to draw before anything is printed
    console.print(plain(fmt.headline(report), style="bold"), highlight=False)
    for table in tables:
        if brief and table.key not in BRIEF_TABLES:
            continue
        console.print(_rich_table(table))
