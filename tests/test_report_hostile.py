"""A hostile or degenerate report through every form (issue 30, classes 3 and 7).

Generator-driven, the way the container and checkpoint readers are tested: hypothesis puts
names made of escape sequences, C1 controls, bidi overrides, ``<script>``, Markdown syntax,
mathtext (``$\\frac{a}{b}$``, ``${{{...``), newlines and ``*/`` into every text field of a real
report, and degenerate numbers (zeros, identical values, the float limits, NaN and infinity
where a document built in memory may hold them) into every charted figure; each form must
come out whole and literal. A report larger than the renderer draws is refused in one line
before anything is drawn or written.
"""

from __future__ import annotations

import copy
import io
import math
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from clihelp import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from report_samples import digits_result, make_result, tiny_model
from rich.console import Console
from test_text_escaping import PIECES, assert_terminal_safe, hostile_text

from albsnn_compress.cli.terminal import render_terminal
from albsnn_compress.errors import ReportError
from albsnn_compress.files.safe_text import shorten, visible
from albsnn_compress.report import (
    build_report,
    dump_json,
    fmt,
    load_report,
    parse_report,
    render_html,
    render_markdown,
    render_text,
    write_report,
)
from albsnn_compress.report.charts import (
    MAX_CHART_LAYERS,
    MAX_CHART_VALUE,
    MAX_LABEL_CHARS,
    left_out_charts,
    render_charts,
)
from albsnn_compress.report.tables import (
    MAX_LISTED_NAMES,
    MAX_RENDER_CHARS,
    MAX_RENDER_ITEMS,
    MAX_RENDER_LAYERS,
    MAX_RENDER_STEPS,
    check_renderable,
    report_tables,
)

VERSIONS = {"albsnn-compress": "test"}
BASE = build_report(digits_result(), versions=VERSIONS)
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHARTED = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEGENERATE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _report() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def inject(report: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """Every text field of ``report`` set to one of ``texts`` in turn (names, reasons, paths, settings, versions)."""
    pool = iter(texts * 1000)

    def take() -> str:
        return next(pool)

    report["model"]["name"] = take()
    search = report["search"]
    search["strategy"], search["estimator"] = take(), take()
    search["candidates"] = [take() for _ in search["candidates"]]
    search["binarized"] = [take() for _ in search["binarized"]]
    search["config"] = {take(): take() for _ in range(3)}
    for layer in report["layers"]:
        layer["name"], layer["type"], layer["reason"] = take(), take(), take()
        for tensor in layer["tensors"]:
            tensor["name"] = take()
    for step in report["trajectory"]:
        step["action"] = take()
        step["layers"] = [take() for _ in step["layers"]]
        step["binarized"] = [take() for _ in step["binarized"]]
        step["estimates_points"] = {take(): value for value in step["estimates_points"].values()}
        step["estimates_raw"] = {take(): value for value in step["estimates_raw"].values()}
    for entry in report["storage"]["on_disk"].values():
        entry["path"] = take()
    if "paired" in report["accuracy"]:
        for paired in report["accuracy"]["paired"].values():
            paired["method"] = take()
    report["timings"] = {take(): 1.0, **report["timings"]}
    report["versions"] = {take(): take()}
    return report


class _Page(HTMLParser):
    """The tags of an HTML text and the text inside each of a few."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.open: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("title", "h1", "h2", "td", "th"):
            self.open.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open:
            self.text[self.open[-1]][-1] += data


def _parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "div", "section",
    "table", "thead", "tbody", "tr", "th", "td", "br", "footer", "figure",
}  # fmt: skip
MARKDOWN_TAGS = {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "strong", "br"}


# --- class 7: text from the file, in every form ------------------------------------------------


@FEW
@given(st.lists(hostile_text, min_size=1, max_size=6))
def test_hostile_text_comes_out_literal_in_every_form(texts: list[str]) -> None:
    report = inject(_report(), texts)
    name = report["model"]["name"]

    document = dump_json(report)  # the JSON: escapes what a terminal would act on, and reads back the same
    assert_terminal_safe(document)
    if any("\ud800" <= char <= "\udfff" for text in texts for char in text):  # a lone surrogate: not Unicode
        with pytest.raises(ReportError, match="surrogate"):
            parse_report(document)  # the reader refuses it (the text forms below still show it escaped)
    else:
        assert parse_report(document) == report

    assert_terminal_safe(render_text(report))

    console = Console(file=io.StringIO(), width=200)
    render_terminal(report, console)
    terminal = console.file.getvalue()  # type: ignore[attr-defined]
    assert_terminal_safe(terminal)

    markdown = render_markdown(report)
    assert_terminal_safe(markdown)
    rendered = _parsed(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown))
    assert set(rendered.tags) <= MARKDOWN_TAGS, set(rendered.tags) - MARKDOWN_TAGS  # no <script>, no <img>
    tables = report_tables(report)
    assert rendered.tags.count("h1") == 1 and rendered.tags.count("h2") == len(tables)
    assert rendered.tags.count("tr") == sum(len(table.rows) + 1 for table in tables)  # no row added or split
    assert rendered.text["h1"][0].strip() == f"Storage report: {visible(name)}".strip()
    shown = [cell.strip() for cell in rendered.text.get("th", []) + rendered.text.get("td", [])]
    assert shown == [cell.strip() for cell in _cells_by_kind(tables)]  # every cell whole, literal, in place

    page = render_html(report, charts=False)
    assert_terminal_safe(page)
    parsed = _parsed(page)
    assert set(parsed.tags) <= PAGE_TAGS, set(parsed.tags) - PAGE_TAGS
    assert parsed.text["title"][0] == f"Storage report: {visible(name)}"
    assert parsed.text["h1"][0] == f"Storage report: {visible(name)}"
    assert parsed.text["th"] + parsed.text["td"] == _cells_by_kind(tables)


def _cells_by_kind(tables: list[Any]) -> list[str]:
    """The cells as a page shows them, every <th> (column names) first, then every <td>; lines made visible."""
    heads = ["".join(visible(line) for line in c.split("\n")) for table in tables for c in table.columns]
    cells = ["".join(visible(line) for line in c.split("\n")) for table in tables for row in table.rows for c in row]
    return heads + cells


@pytest.mark.slow
@CHARTED
@given(st.lists(st.sampled_from(PIECES) | hostile_text, min_size=1, max_size=4))
def test_charts_draw_any_name_literally(texts: list[str]) -> None:
    """Mathtext in a layer or estimator name never reaches matplotlib's parser: no crash, no recursion."""
    report = inject(_report(), texts)
    charts = render_charts(report)
    assert charts is not None and set(charts) == {"storage", "trajectory", "estimator"}
    for svg in charts.values():
        assert_terminal_safe(svg)
    for layer in report["layers"]:
        label = shorten(fmt.short(layer["name"]), MAX_LABEL_CHARS)
        if label == " ".join(label.split()) and label:  # SVG text keeps single inner spaces only
            shown = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            assert f">{shown}</text>" in charts["storage"], label  # one text element, not mathtext glyphs


@pytest.mark.parametrize(
    "name",
    ["$\\frac{a}{b}$", "$\\invalid{$", "$" + "{" * 600 + "$", "$x", "a$b$c", "\\$\\", "$\\sqrt$" * 30, "${}^{}_{}$"],
)
def test_mathtext_in_names_is_shown_as_written(name: str) -> None:
    report = _report()
    candidate = next(layer for layer in report["layers"] if layer["estimate_raw"] is not None)
    candidate["name"] = name  # in both the storage and the estimator chart
    report["search"]["estimator"] = name
    page = render_html(report)
    charts = render_charts(report)
    assert charts is not None
    label = shorten(name, MAX_LABEL_CHARS)
    assert f">{label}</text>" in charts["storage"] and f">{label}</text>" in charts["estimator"]
    assert f"{label} value (estimator units)" in charts["estimator"]
    assert page.count("<svg") == 3


# --- class 3: degenerate numbers ---------------------------------------------------------------

finite = st.one_of(
    st.sampled_from([0.0, 1.0, 1e-300, 5e-324, 1e308, 1.7976931348623157e308]),
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
)
anything = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e308]))


@DEGENERATE
@given(
    st.lists(st.tuples(anything, anything), min_size=1, max_size=8),
    st.lists(st.one_of(st.none(), anything), min_size=1, max_size=8),
    st.lists(st.tuples(anything, anything), min_size=0, max_size=8),
    anything,
)
def test_charts_survive_degenerate_numbers(
    sizes: list[tuple[float, float]],
    estimates: list[float | None],
    steps: list[tuple[float, float]],
    floor: float,
) -> None:
    """Zeros, equal values, the float limits (valid in a report), NaN and infinity (possible in a document built in
    memory): every chart is drawn, or left out with the reason, and the page is whole."""
    report = _report()
    for index, layer in enumerate(report["layers"]):
        layer["bytes_before"], layer["bytes_after"] = sizes[index % len(sizes)]
        layer["estimate_raw"] = estimates[index % len(estimates)]
    report["trajectory"] = [
        dict(report["trajectory"][index % len(report["trajectory"])], storage_bytes=size, val_accuracy=accuracy)
        for index, (size, accuracy) in enumerate(steps)
    ]
    report["accuracy"]["val_floor"] = floor
    charts = render_charts(report)
    assert charts is not None
    left_out = left_out_charts(report)
    assert not set(charts) & set(left_out)
    if "storage" not in left_out and any(
        math.isfinite(v) for layer in report["layers"] for v in (layer["bytes_before"], layer["bytes_after"])
    ):
        assert "storage" in charts
    if "trajectory" not in left_out and any(math.isfinite(s) and math.isfinite(a) for s, a in steps):
        assert "trajectory" in charts
    for name, why in left_out.items():
        assert "beyond" in why and name not in charts


def test_all_zero_sizes_draw_on_a_linear_axis_and_say_so() -> None:
    report = _report()
    for layer in report["layers"]:
        layer["bytes_before"] = layer["bytes_after"] = 0
    charts = render_charts(report)
    assert charts is not None and "linear scale" in charts["storage"]
    assert "log scale" in (render_charts(_report()) or {})["storage"]


def test_a_report_without_layers_or_steps_still_renders() -> None:
    report = _report()
    report["layers"], report["trajectory"] = [], []
    report["storage"]["computed"].update(bits_before=0, bits_after=0)
    for text in (render_html(report), render_markdown(report), render_text(report)):
        assert "Storage report" in text or "computed" in text
    assert render_charts(report) == {}


@pytest.mark.slow
@FEW
@given(st.lists(finite, min_size=3, max_size=3))
def test_valid_documents_with_degenerate_figures_round_trip_and_render(values: list[float]) -> None:
    """Equal, zero and extreme (finite) figures a schema-valid report may hold, through JSON and every form."""
    report = _report()
    for layer in report["layers"]:
        layer["bytes_before"], layer["bytes_after"] = values[0], values[1]
    for step in report["trajectory"]:
        step["storage_bytes"] = step["val_accuracy"] = values[2]
    loaded = parse_report(dump_json(report))
    page = render_html(loaded)
    left_out = left_out_charts(loaded)
    assert page.count("<svg") + len(left_out) == 3  # each chart drawn, or left out with a note saying why
    for name in left_out:
        assert f'id="no-chart-{name}"' in page and abs(max(values, key=abs)) > MAX_CHART_VALUE
    render_markdown(loaded)
    render_text(loaded)


# --- class 3: the size limit ---------------------------------------------------------------------


def big_report(layers: int) -> dict[str, Any]:
    """A schema-valid report with ``layers`` layers (copies of the tiny model's first one)."""
    model = tiny_model()
    report = build_report(make_result(model, ["layers.conv1"], ["layers.conv1"]), versions=VERSIONS)
    first = report["layers"][0]
    report["layers"] = [dict(copy.deepcopy(first), name=f"layers.c{i}") for i in range(layers)]
    computed = report["storage"]["computed"]
    computed["bits_before"] = sum(layer["bits_before"] for layer in report["layers"])
    computed["bits_after"] = sum(layer["bits_after"] for layer in report["layers"])
    return report


def test_the_renderer_refuses_a_report_over_its_stated_limits_in_one_line() -> None:
    started = time.perf_counter()
    huge = big_report(30_000)  # tens of thousands of layers: refused at once
    with pytest.raises(ReportError) as refused:
        render_text(huge)
    message = str(refused.value)
    assert "\n" not in message and f"30000 layers, more than the {MAX_RENDER_LAYERS}" in message
    assert "--format json" in message
    for render in (render_markdown, render_html, render_charts, check_renderable):
        with pytest.raises(ReportError, match="30000 layers"):
            render(huge)
    with pytest.raises(ReportError, match="30000 layers"):
        render_terminal(huge, Console(file=io.StringIO()))
    assert time.perf_counter() - started < 30  # building the document is most of it; no table is drawn

    steps = _report()
    steps["trajectory"] = steps["trajectory"][:1] * (MAX_RENDER_STEPS + 1)
    with pytest.raises(ReportError, match=f"{MAX_RENDER_STEPS + 1} search steps"):
        check_renderable(steps)
    rows = _report()
    rows["search"]["config"] = {f"k{i}": i for i in range(MAX_RENDER_ITEMS)}
    with pytest.raises(ReportError, match="rows and lines"):
        render_markdown(rows)
    long = _report()
    long["layers"][0]["reason"] = "x" * (MAX_RENDER_CHARS + 1)
    with pytest.raises(ReportError, match="characters, more than"):
        render_text(long)
    at_limit = big_report(MAX_RENDER_LAYERS)
    assert render_text(at_limit).count("layers.c") == 0  # drawn: the tables show short names
    assert "c4095" in render_text(at_limit)


def test_long_step_lists_are_cut_in_the_tables_and_kept_in_the_json() -> None:
    report = _report()
    names = [f"layers.x{i}" for i in range(MAX_LISTED_NAMES + 5)]
    report["trajectory"][1]["binarized"] = names
    text = render_text(report, width=10_000)
    assert "x0, x1" in text and "(+5 more)" in text and f"x{MAX_LISTED_NAMES + 4}" not in text
    assert parse_report(dump_json(report))["trajectory"][1]["binarized"] == names


def test_charts_of_a_large_model_are_left_out_with_a_note() -> None:
    report = big_report(MAX_CHART_LAYERS + 1)
    assert "storage" in left_out_charts(report)
    page = render_html(report)
    assert 'id="no-chart-storage"' in page and "chart-storage" not in page.replace("no-chart-storage", "")
    assert f"{MAX_CHART_LAYERS + 1} layers, more than the {MAX_CHART_LAYERS} a chart draws" in page


def test_report_command_refuses_an_oversized_report_before_writing(tmp_path: Path) -> None:
    path = write_report(big_report(MAX_RENDER_LAYERS + 1), tmp_path / "big", formats=("json",))["json"]
    for form in ("terminal", "md", "html"):
        out = tmp_path / f"out.{form}"
        result = run_cli(["report", str(path), "--format", form, "-o", str(out)], expected_exit=2)
        assert not out.exists()
        errors = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]  # no manifest
        assert len(errors) == 1 and errors[0].startswith("error: ")
        assert f"{MAX_RENDER_LAYERS + 1} layers, more than the {MAX_RENDER_LAYERS}" in errors[0]
        result = run_cli(["report", str(path), "--format", form], expected_exit=2)
        assert result.stdout == ""  # not even the headline before the refusal
    shown = run_cli(["report", str(path), "--format", "json"]).stdout  # the JSON form has no such limit
    assert load_report(path) == parse_report(shown)
    target = tmp_path / "pair"
    target.mkdir()
    with pytest.raises(ReportError, match="layers, more than"):
        write_report(load_report(path), target, formats=("json", "html"))
    assert list(target.iterdir()) == []  # not even the JSON: refused before the first file


# --- the report command with hostile names ---------------------------------------------------------


@pytest.mark.parametrize("form", ["terminal", "md", "html", "json"])
def test_report_command_prints_hostile_names_escaped(tmp_path: Path, form: str) -> None:
    report = inject(_report(), ["\x1b]0;owned\x07", "[bold]x[/bold]", "\u202eevil\n\x9b2J", "<script>", "*/$\\x$"])
    path = write_report(report, tmp_path / "run", formats=("json",))["json"]
    result = run_cli(["report", str(path), "--format", form])
    assert_terminal_safe(result.stdout)
    if form in ("terminal", "md"):
        assert "[bold]x[/bold]" in result.stdout or "\\[bold\\]x\\[/bold\\]" in result.stdout
    if form in ("md", "html"):
        assert "<script>" not in result.stdout  # the terminal and the JSON show it as the text it is
