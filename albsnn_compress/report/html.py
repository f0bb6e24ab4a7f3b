"""The report as ONE self-contained HTML file: inline CSS, inline SVG charts, nothing fetched.

A Content-Security-Policy (``default-src 'none'``) makes the browser refuse any
external load, so a page that opened without console errors provably needs no
network. The output is deterministic: the same JSON gives the same bytes.

Every text is HTML-escaped after :func:`~albsnn_compress.files.safe_text.visible` (no control
character reaches the page, nor a terminal that shows its source), and a report larger than
the renderer draws is refused before anything is drawn
(:func:`~albsnn_compress.report.tables.check_renderable`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from albsnn_compress.files.safe_text import visible
from albsnn_compress.report import fmt
from albsnn_compress.report.charts import left_out_charts, render_charts
from albsnn_compress.report.tables import Table, check_renderable, report_tables

__all__ = ["render_html", "NO_CHARTS_NOTE"]

NO_CHARTS_NOTE = (
    "Charts need matplotlib, which is not installed: pip install 'albsnn-compress[plots]'. "
    "The tables hold every figure."
)
_CHARTS_AFTER = {"layers": ("storage", "estimator"), "trajectory": ("trajectory",)}
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body {
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d232a; background: #f6f7f9; margin: 0;
}
main { max-width: 1560px; margin: 0 auto; padding: 24px 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
p.headline { margin: 0 0 16px; color: #44505c; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dde2e7; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card .label { font-size: 12px; color: #5c6874; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; }
.card .sub { font-size: 12px; color: #5c6874; }
.card.bad .value { color: #c62828; }
section { background: #fff; border: 1px solid #dde2e7; border-radius: 8px; padding: 4px 16px 12px; margin-top: 16px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
table.kv { width: auto; min-width: 40%; }
th, td { padding: 3px 6px; white-space: nowrap; border-bottom: 1px solid #eceff2; vertical-align: top; }
th { text-align: left; background: #f0f2f5; font-weight: 600; white-space: normal; vertical-align: bottom; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td:last-child { white-space: normal; min-width: 10em; overflow-wrap: anywhere; }
tr.hl td { background: #e8f1fb; font-weight: 600; }
p.note { font-size: 12px; color: #5c6874; margin: 6px 0 0; }
figure { margin: 12px 0 0; }
figure svg { max-width: 100%; height: auto; }
footer { font-size: 12px; color: #5c6874; margin-top: 20px; }
""".strip()


def _esc(text: Any) -> str:
    """One line of text for the page: control characters as visible escapes, then HTML-escaped."""
    return html.escape(visible(str(text)), quote=True)


def _cell(text: str) -> str:
    """A cell: its lines (``"\\n"`` separates them) escaped one by one, joined by ``<br>``."""
    return "<br>".join(_esc(line) for line in text.split("\n"))


def _table(table: Table) -> str:
    head = "".join(f'<th class="{table.align[i]}">{_esc(c)}</th>' for i, c in enumerate(table.columns))
    body = []
    for index, row in enumerate(table.rows):
        emphasised = index < len(table.highlight) and table.highlight[index]
        cells = "".join(f'<td class="{table.align[i]}">{_cell(c)}</td>' for i, c in enumerate(row))
        body.append(f'<tr class="hl">{cells}</tr>' if emphasised else f"<tr>{cells}</tr>")
    note = f'<p class="note">{_esc(table.note)}</p>' if table.note else ""
    note += f'<p class="note">{_esc(table.details)}</p>' if table.details else ""
    kind = ' class="kv"' if len(table.columns) <= 2 else ""
    return (
        f'<div class="scroll"><table{kind}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        f"{note}"
    )


def _card(label: str, value: str, sub: str, bad: bool = False) -> str:
    cls = "card bad" if bad else "card"
    return (
        f'<div class="{cls}"><div class="label">{_esc(label)}</div><div class="value">{_esc(value)}</div>'
        f'<div class="sub">{_esc(sub)}</div></div>'
    )


def _cards(report: Mapping[str, Any]) -> str:
    computed = report["storage"]["computed"]
    acc = report["accuracy"]
    container = report["storage"]["on_disk"]["container"]["bytes"]
    cards = [
        _card("Model size (computed)", fmt.size(computed["bytes_after"]), f"from {fmt.size(computed['bytes_before'])}"),
        _card("Compression", fmt.ratio(computed["ratio"]), f"{fmt.percent(computed['saved_percent'])} saved"),
        _card(
            ".albsnn on disk",
            fmt.size(container),
            f"ratio {fmt.ratio(report['storage']['on_disk_ratio']['container'])} vs model.pt",
        ),
        _card("Val accuracy", fmt.percent(acc["val_after"]), f"from {fmt.percent(acc['val_before'])}"),
        _card("Drop / budget", fmt.points(acc["val_drop_points"]), _drop_sub(report), bad=not acc["within_budget"]),
        *_cost_cards(report),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _cost_cards(report: Mapping[str, Any]) -> list[str]:
    """Synaptic operations and the energy estimate per inference, when the report has them (schema version 3)."""
    operations = report.get("operations")
    if operations is None:
        return []
    before, after = operations["input_model"]["total"], operations["compressed_model"]["total"]
    saved = operations["saved_percent"]
    return [
        _card(
            "Synaptic ops / inference",
            fmt.operations(after["synaptic_ops"]),
            f"from {fmt.operations(before['synaptic_ops'])} ({fmt.percent(saved['synaptic_ops'])} saved)",
        ),
        _card(
            "Energy (estimate)",
            fmt.energy(after["energy_pj"]),
            f"from {fmt.energy(before['energy_pj'])}; {operations['energy']['label']}",
        ),
    ]


def _drop_sub(report: Mapping[str, Any]) -> str:
    """The budget, and the drop's interval when the report has the paired counts."""
    budget = f"budget {fmt.points(report['search']['budget_points'])}"
    paired = report["accuracy"].get("paired", {}).get("val")
    if paired is None:
        return budget
    return f"{budget}; {100 * paired['interval_confidence']:g} % interval {fmt.interval(paired['interval_points'])}"


def _figures(names: tuple[str, ...], charts: Mapping[str, str] | None, left_out: Mapping[str, str]) -> str:
    if charts is None:
        return ""
    parts = []
    for name in names:
        if name in charts:
            parts.append(f'<figure id="chart-{name}">{charts[name]}</figure>')
        elif name in left_out:
            note = f"The {name} chart is left out: {left_out[name]}. The table above lists every figure."
            parts.append(f'<p class="note" id="no-chart-{name}">{_esc(note)}</p>')
    return "".join(parts)


def render_html(report: Mapping[str, Any], *, charts: bool = True) -> str:
    """The report as one self-contained HTML page.

    Args:
        report: a report document (see :mod:`albsnn_compress.report.schema`).
        charts: draw the SVG charts (needs matplotlib; without it a note says so).

    Raises:
        ReportError: the report is larger than the renderer draws
            (:func:`~albsnn_compress.report.tables.check_renderable`), before anything is drawn.
    """
    check_renderable(report)
    tables = report_tables(report)  # refuses a report too large to draw before a chart is drawn
    drawn = render_charts(report) if charts else None
    left_out = left_out_charts(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Storage report: {_esc(report['model']['name'])}</title>",
        f"<style>\n{_CSS}\n</style></head><body><main>",
        f"<h1>Storage report: {_esc(report['model']['name'])}</h1>",
        f'<p class="headline">{_esc(fmt.headline(report))}</p>',
        _cards(report),
    ]
    if charts and drawn is None:
        parts.append(f'<p class="note" id="no-charts">{_esc(NO_CHARTS_NOTE)}</p>')
    for table in tables:
        parts.append(
            f'<section id="{table.key}"><h2>{_esc(table.title)}</h2>{_table(table)}'
            f"{_figures(_CHARTS_AFTER.get(table.key, ()), drawn, left_out)}</section>"
        )
    parts.append(
        f"<footer>albsnn-compress report, schema {_esc(report['schema'])} v{_esc(report['schema_version'])}.</footer>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
