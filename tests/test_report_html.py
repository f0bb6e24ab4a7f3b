"""The HTML report: one self-contained, deterministic file that a real browser opens cleanly."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_samples import digits_result

from albsnn_compress.report import build_report, dump_json, fmt, parse_report, render_html, render_markdown
from albsnn_compress.report.html import NO_CHARTS_NOTE

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "scripts" / "screenshot_report.sh"


# Headless, offline and as root: without the network flags Chromium waits on connections it cannot make.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_BROWSER = "no chromium, chromium-browser or google-chrome on PATH (apt-get install -y chromium)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _browser() -> str:
    """Chromium's path; skips the test without one, and fails it under CI=true so CI cannot skip it silently."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if _in_ci():
        pytest.fail(f"{NO_BROWSER}; CI=true, so the browser test must run (.ci/run installs chromium)")
    pytest.skip(NO_BROWSER)


@pytest.fixture(scope="module")
def report() -> dict:
    return build_report(digits_result(), versions={"albsnn-compress": "test"})


@pytest.fixture(scope="module")
def page(report: dict) -> str:
    return render_html(report)


def test_html_is_self_contained(page: str) -> None:
    for forbidden in ("http://", "https://", "//cdn", "src=", "<link", "@import", "<script", "<iframe", "<object"):
        assert forbidden not in page, forbidden
    assert set(re.findall(r"url\((.)", page)) <= {"#"}  # only same-document references (SVG clip paths)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_html_has_three_inline_svg_charts_with_unique_ids(page: str) -> None:
    assert page.count("<svg") == 3
    for chart in ("storage", "trajectory", "estimator"):
        assert f'<figure id="chart-{chart}"><svg' in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    references = set(re.findall(r'(?:xlink:href="|url\()#([^")]+)', page))
    assert references and references <= set(ids)


def test_html_is_deterministic(report: dict, page: str) -> None:
    assert render_html(report) == page
    assert render_html(parse_report(dump_json(report))) == page


def test_markdown_and_html_show_the_same_figures(report: dict, page: str) -> None:
    markdown = render_markdown(report)
    computed = report["storage"]["computed"]
    figures = [
        fmt.size(computed["bytes_before"]),
        fmt.size(computed["bytes_after"]),
        fmt.ratio(computed["ratio"]),
        fmt.percent(computed["saved_percent"]),
        fmt.count(computed["bits_after"]),
        fmt.points(report["accuracy"]["val_drop_points"]),
        fmt.percent(report["accuracy"]["test_after"]),
        fmt.percent(report["accuracy"]["val_floor"]),
    ]
    for layer in report["layers"]:
        figures += [fmt.count(layer["bits_before"]), fmt.count(layer["bits_after"]), fmt.size(layer["bytes_after"])]
    for step in report["trajectory"]:
        figures += [fmt.percent(step["val_accuracy"]), fmt.size(step["storage_bytes"])]
    for figure in figures:
        assert figure in markdown, figure
        assert figure in page, figure
    assert fmt.headline(report) in markdown


def test_html_without_matplotlib_has_tables_and_a_note(report: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    page = render_html(report)
    assert "<svg" not in page
    assert f'<p class="note" id="no-charts">{html.escape(NO_CHARTS_NOTE)}</p>' in page
    assert '<section id="layers">' in page and fmt.count(report["storage"]["computed"]["bits_after"]) in page


def _open_in_browser(browser: str, html_file: Path, profile: Path, width: int = 1280) -> tuple[str, list[str]]:
    """The DOM Chromium built (in a ``width`` px wide window) and the console messages it logged."""
    done = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},2000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            html_file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_missing_browser_skips_outside_ci_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        _browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so the browser test must run"):
        _browser()


@pytest.mark.browser
def test_html_opens_in_headless_chromium_without_console_errors(page: str, tmp_path: Path) -> None:
    browser = _browser()
    good = tmp_path / "report.html"
    good.write_text(page, encoding="utf-8")
    dom, console = _open_in_browser(browser, good, tmp_path / "profile-good")
    assert console == []
    assert dom.count("<svg") == 3 and 'id="chart-trajectory"' in dom
    # Control: an external load on the same policy is refused and logged, so the check above can fail.
    bad = tmp_path / "bad.html"
    bad.write_text(page.replace("<main>", '<main><img src="https://example.invalid/x.png">', 1), encoding="utf-8")
    _, console = _open_in_browser(browser, bad, tmp_path / "profile-bad")
    assert any("example.invalid" in line for line in console)


# A test-only copy of the page gets this script (and a CSP that allows inline scripts, in that copy only):
# it measures the laid-out page and writes the numbers into the DOM that --dump-dom prints.
_PROBE = """<pre id="layout-probe"></pre><script>
const page = document.documentElement;
const overflowing = [...document.querySelectorAll("main *")]
  .filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > page.clientWidth + 0.5)
  .map(e => (e.closest("section") ? e.closest("section").id + " " : "") + e.tagName + (e.id ? "#" + e.id : ""))
  .slice(0, 12);
const wraps = {};
for (const w of document.querySelectorAll(".scroll")) {
  wraps[w.parentElement.id] = {client: w.clientWidth, scroll: w.scrollWidth, right: w.getBoundingClientRect().right};
}
const lastHeading = document.querySelector("#layers th:last-child").getBoundingClientRect();
document.getElementById("layout-probe").textContent = JSON.stringify({
  window: window.innerWidth, client: page.clientWidth, scroll: page.scrollWidth,
  overflowing: overflowing, wraps: wraps, last_column_right: lastHeading.right});
</script>"""


def _layout(browser: str, page: str, tmp_path: Path, width: int) -> dict:
    """Measurements of the page laid out by Chromium in a ``width`` px wide window."""
    probed = page.replace(
        "content=\"default-src 'none';", "content=\"default-src 'none'; script-src 'unsafe-inline';", 1
    )
    assert probed != page, "the page's CSP changed; update the probe"
    probed = probed.replace("</main>", f"</main>{_PROBE}", 1)
    html_file = tmp_path / f"probe-{width}.html"
    html_file.write_text(probed, encoding="utf-8")
    dom, console = _open_in_browser(browser, html_file, tmp_path / f"profile-{width}", width)
    assert console == []
    found = re.search(r'<pre id="layout-probe">(.+?)</pre>', dom, re.S)
    assert found, f"the probe script did not run; DOM: {dom[:500]}"
    return json.loads(html.unescape(found.group(1)))


def test_layer_table_fits_a_1280_px_window(page: str, tmp_path: Path) -> None:
    layout = _layout(_browser(), page, tmp_path, 1280)
    assert layout["window"] == 1280
    assert layout["scroll"] <= layout["client"], layout  # the page itself never scrolls sideways
    assert layout["overflowing"] == [], layout
    for section, wrap in layout["wraps"].items():
        assert wrap["scroll"] <= wrap["client"], (section, wrap)  # every table fits: nothing to scroll to
    assert layout["last_column_right"] <= layout["wraps"]["layers"]["right"], layout  # the Decision column shows


def test_a_table_too_wide_for_the_window_scrolls_inside_its_section(page: str, tmp_path: Path) -> None:
    layout = _layout(_browser(), page, tmp_path, 800)
    assert layout["window"] == 800
    assert layout["scroll"] <= layout["client"], layout
    assert layout["overflowing"] == [], layout
    layers = layout["wraps"]["layers"]
    assert layers["scroll"] > layers["client"], layers  # too wide at 800 px: its own wrapper scrolls


def test_screenshot_script_writes_a_png(page: str, tmp_path: Path) -> None:
    _browser()
    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")
    out = tmp_path / "shot.png"
    done = subprocess.run(
        ["bash", str(SCREENSHOT), str(html_file), str(out), "800", "600"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 800 and int.from_bytes(data[20:24], "big") == 600


def test_screenshot_script_refuses_a_missing_report(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCREENSHOT), str(tmp_path / "absent.html"), str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "not found" in done.stderr
