"""Text from files, escaped for each medium it reaches: terminals, Markdown, C comments (issue 30, class 7).

Generator-driven: hypothesis draws names made of the pieces an attacker would use (escape
sequences that retitle or clear a terminal, C1 controls, bidi overrides, ``<script>``, Markdown
syntax, ``*/`` and ``/*``, newlines, lone surrogates) and checks each medium's function; then the
places that print such text (the CLI's error line, ``inspect``, ``compress``) and the C export,
compiled with ``-Werror``, are checked end to end.
"""

from __future__ import annotations

import copy
import html
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from clihelp import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from report_samples import TINY_SPEC

from albsnn_compress import SpikingNet
from albsnn_compress.checkpoint import read_checkpoint, save_checkpoint
from albsnn_compress.errors import SpecError
from albsnn_compress.files.safe_text import ELLIPSIS, markdown_text, shorten, visible
from albsnn_compress.formats.c.export import build_c_sources
from albsnn_compress.formats.c.text import c_comment
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.limits import _is_control

PIECES = [
    "\x1b]0;owned\x07",  # set the terminal's title
    "\x1b[2J\x1b[H",  # clear the screen
    "\x9b31m",  # CSI as one C1 character
    "\x85",  # NEL (C1 newline)
    "\x00",
    "\x7f",
    "\u202e",  # right-to-left override (Trojan Source)
    "\u2066",
    "\u200f",
    "\u2028",  # line separator
    "\ufeff",
    "\ud800",  # a lone surrogate: cannot even be encoded as UTF-8
    "\n",
    "\r\n",
    "\t",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "&lt;",
    "*/",
    "/*",
    "*//*",
    "??/",
    "\\",
    "|",
    "# ",
    "- ",
    "1. ",
    "> ",
    "    ",
    "[link](http://example.com)",
    "![x](y)",
    "**",
    "_",
    "`",
    "~~",
    "$x$",
    "$\\frac{a}{b}$",
    "[bold red]",
    "[/]",
    "Größe",
    "conv1",
    "😀",
]
hostile_text = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
    st.text(max_size=40),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=5)), max_size=6).map("".join),
)
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hidden(char: str) -> bool:
    """A character a terminal, a bidi algorithm or a line-based format interprets."""
    return _is_control(char) or (not char.isprintable() and char != " ")


def assert_terminal_safe(text: str, allow_newlines: bool = True) -> None:
    """No ESC, C1, bidi control, lone surrogate or other invisible character; newlines only where allowed."""
    bad = [char for char in text if hidden(char) and not (allow_newlines and char == "\n")]
    assert not bad, f"raw control characters {bad!r} in {text!r}"


# --- visible: terminals, plain text --------------------------------------------------------


@EXAMPLES
@given(hostile_text)
def test_visible_leaves_nothing_a_terminal_interprets(text: str) -> None:
    shown = visible(text)
    assert_terminal_safe(shown, allow_newlines=False)
    assert visible(shown) == shown  # idempotent: applying it again (several layers do) changes nothing
    shown.encode("utf-8")  # printable: even a lone surrogate became an escape
    if all(not hidden(char) for char in text):
        assert shown == text  # printable text, backslashes and markup included, is shown as it is


def test_visible_writes_escapes_a_reader_recognises() -> None:
    assert visible("a\x1b]0;x\x07b") == "a\\x1b]0;x\\x07b"
    assert visible("\u202eabc\n\x9b") == "\\u202eabc\\n\\x9b"
    assert visible("\ud800") == "\\ud800"
    assert visible("Größe <b> [bold] $x$ \\") == "Größe <b> [bold] $x$ \\"


def test_shorten_cuts_with_an_ellipsis() -> None:
    assert shorten("abc", 3) == "abc"
    assert shorten("abcdef", 5) == "ab" + ELLIPSIS
    assert len(shorten("x" * 1000, 40)) == 40


# --- markdown_text: GitHub Markdown ---------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _markdown_html(source: str) -> _Tags:
    parser = _Tags()
    parser.feed(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(source))
    return parser


@EXAMPLES
@given(hostile_text)
def test_markdown_text_renders_as_the_literal_text(text: str) -> None:
    """Rendered by a CommonMark parser (raw HTML on), the escaped text is one paragraph of exactly the text."""
    source = markdown_text(text, line_start=True)
    assert "\n" not in source and "<" not in source
    parsed = _markdown_html(source)
    expected = visible(text).strip(" ")
    if expected:
        assert parsed.tags == ["p"], (source, parsed.tags)
        assert "".join(parsed.text).strip("\n").strip(" ") == expected
    # in a heading and in a table cell: still literal, one heading, one cell
    heading = _markdown_html(f"# Report: {markdown_text(text)}")
    assert heading.tags == ["h1"] and "".join(heading.text).strip() == f"Report: {visible(text)}".strip()
    table = _markdown_html(f"| a | b |\n|---|---|\n| {markdown_text(text)} | x |\n")
    assert table.tags.count("td") == 2 and set(table.tags) <= {"table", "thead", "tbody", "tr", "th", "td"}


def test_markdown_text_escapes_html_and_structure() -> None:
    assert markdown_text("<script>") == "&lt;script>"
    assert markdown_text("a | b") == "a \\| b"
    assert markdown_text("x\ny") == "x\\\\ny"  # the newline is shown as \n, escaped for Markdown
    assert markdown_text("weight_scale") == "weight_scale"  # between letters "_" cannot emphasise
    assert markdown_text("_x_") == "\\_x\\_"
    assert markdown_text("# h", line_start=True) == "\\# h"
    assert markdown_text("- item", line_start=True) == "\\- item"
    assert markdown_text("1. item", line_start=True) == "1\\. item"
    assert markdown_text("    code", line_start=True) == "&#32;&#32;&#32;&#32;code"


# --- c_comment: C comments ------------------------------------------------------------------


@EXAMPLES
@given(hostile_text)
def test_c_comment_cannot_end_or_nest_a_comment(text: str) -> None:
    safe = c_comment(text)
    assert all(" " <= char <= "~" for char in safe)  # printable ASCII: no newline, no control character
    assert "*/" not in safe and "/*" not in safe and "??" not in safe and not safe.endswith("\\")
    assert "*/" not in f"/* {safe} */"[2:-2] and "/*" not in f"/* {safe} */"[2:-2]


def _c_model(name: str) -> SpikingNet:
    spec = copy.deepcopy(TINY_SPEC)
    spec["name"] = name
    torch.manual_seed(0)
    return SpikingNet(spec, 2).eval()


CC = shutil.which("cc")
HOSTILE_SPEC_NAME = "net */ int evil = 1; /* <script>alert(1)</script> | # $x$ ??/ \\"
"""Printable, so the spec accepts it as a model name: it reaches the C comments and the README."""


@pytest.mark.subprocess
@pytest.mark.subprocess
@pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")
@pytest.mark.parametrize("bypass", [False, True], ids=["spec-name", "control-characters-past-the-spec"])
def test_c_export_with_a_hostile_model_name_compiles_with_werror(tmp_path: Path, bypass: bool) -> None:
    model = _c_model(HOSTILE_SPEC_NAME)
    if bypass:  # the spec refuses control characters; the comment function must not depend on that
        model.spec["name"] = HOSTILE_SPEC_NAME + "\n#error injected\n*/\x1b[2J\u202e/*"
    export = build_c_sources(model)
    for name, text in export.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for source in ("albsnn_model.c", "albsnn_kernels.c"):
        done = subprocess.run(
            [CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", source, "-o", f"{source}.o"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    header = export.files["albsnn_model.h"]
    assert "int evil" in header.splitlines()[0]  # the name is there, inside the comment
    assert "* / int evil = 1; / * " in header
    readme = export.files["README.md"]
    title = readme.splitlines()[0]
    assert title.startswith("# net ") and readme.splitlines()[1] == ""  # one heading line, newlines shown as \n
    assert "<script>" not in readme and "&lt;script>" in title and "\\|" in title and "\\$x\\$" in title
    parsed = _markdown_html(readme)
    assert "script" not in parsed.tags
    assert_terminal_safe(readme)


def test_the_spec_refuses_control_characters_and_non_identifier_layer_names() -> None:
    """What reaches the C export and the report from a spec: printable model names, identifier layer names."""
    for bad in ("a\nb", "a\x1b[2Jb", "a\u202eb", "", "x" * 257):
        with pytest.raises(SpecError):
            _c_model(bad)
    spec = copy.deepcopy(TINY_SPEC)
    spec["layers"][0]["name"] = "conv*/x"
    with pytest.raises(SpecError, match="identifier"):
        SpikingNet(spec, 1)
    assert _c_model(HOSTILE_SPEC_NAME).spec["name"] == HOSTILE_SPEC_NAME  # printable text is a valid name


# --- the command line -------------------------------------------------------------------------


def _assert_clean(result_text: str) -> None:
    assert_terminal_safe(result_text)
    assert "\x1b" not in result_text and "\x9b" not in result_text and "\u202e" not in result_text


@pytest.mark.parametrize("piece", ["\x1b]0;owned\x07", "\x1b[2J", "\x9b31m", "\u202e", "\n[fake]"])
def test_error_lines_escape_what_a_file_name_holds(tmp_path: Path, piece: str) -> None:
    bad = tmp_path / f"bad{piece}.json"
    bad.write_text("{", encoding="utf-8")
    result = run_cli(["report", str(bad)], expected_exit=2)
    _assert_clean(result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert visible(piece) in result.stderr
    result = run_cli(["report", str(tmp_path / f"missing{piece}.json")], expected_exit=2)  # click's own error
    _assert_clean(result.stderr)
    assert result.stderr.count("\n") == 1


def test_inspect_shows_names_and_metadata_literally(tmp_path: Path) -> None:
    """A container's model name (printable, markup-like) and metadata (free text, control characters) as text."""
    model = _c_model("[bold red]net[/] $x$ */")
    path = tmp_path / "m.albsnn"
    write_container(path, model, metadata={"note\x1b[2J": "\x1b]0;owned\x07 \u202eevil [link]"})
    result = run_cli(["inspect", str(path)])
    _assert_clean(result.stdout + result.stderr)
    assert "[bold red]net[/] $x$ */" in result.stdout  # rich did not take it as markup
    assert "\\x1b]0;owned\\x07" in result.stdout and "\\u202eevil [link]" in result.stdout
    as_json = run_cli(["inspect", str(path), "--json"]).stdout
    _assert_clean(as_json)


@pytest.mark.slow
def test_compress_prints_a_markup_like_model_name_literally(digits_checkpoint: Path, tmp_path: Path) -> None:
    loaded = read_checkpoint(digits_checkpoint)
    spec = copy.deepcopy(loaded.spec)
    spec["name"] = "[bold red]net[/] $\\frac{a}{b}$ <script> */"
    model = SpikingNet(spec, loaded.timesteps)
    model.load_state_dict(loaded.build().state_dict())
    checkpoint = tmp_path / "hostile.pt"
    save_checkpoint(checkpoint, model, loaded.metadata)
    out = tmp_path / "out"
    result = run_cli([str(checkpoint), "--budget", "5", "--epochs", "0.3", "--trial-epochs", "0.3", "-o", str(out)])
    _assert_clean(result.stdout)
    assert spec["name"] in result.stdout  # the headline, as written: no markup, no mathtext
    page = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(spec["name"]) in page and "<script>" not in page
    for rendered in ("md", "terminal"):
        shown = run_cli(["report", str(out / "report.json"), "--format", rendered]).stdout
        _assert_clean(shown)
    markdown = run_cli(["report", str(out / "report.json"), "--format", "md"]).stdout
    assert markdown.startswith("# Storage report: \\[bold red\\]net\\[/\\] \\$\\\\frac{a}{b}\\$ &lt;script> \\*/\n")
