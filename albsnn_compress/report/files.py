"""Render a report in any form and write report files atomically."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from albsnn_compress.errors import ReportError
from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.report.html import render_html
from albsnn_compress.report.markdown import render_markdown
from albsnn_compress.report.schema import validate_report
from albsnn_compress.report.tables import check_renderable
from albsnn_compress.report.text import render_text

__all__ = ["FORMATS", "FILE_SUFFIXES", "dump_json", "render", "write_report", "report_paths"]

FORMATS = ("terminal", "json", "md", "html")
FILE_SUFFIXES = {"json": ".json", "md": ".md", "html": ".html", "terminal": ".txt"}
DEFAULT_STEM = "report"


_UNPRINTABLE = re.compile(r"[^\x20-\x7e\n]")


def dump_json(report: Mapping[str, Any]) -> str:
    """The report as JSON text (2-space indent, UTF-8, no NaN), the form every other is rendered from.

    Printable text stays as it is (``Größe``); every other character (C1 controls, bidi overrides,
    a lone surrogate that UTF-8 cannot hold) is written as a ``\\uXXXX`` escape, so the JSON is
    safe to print on a terminal, always encodes, and parses back to the same document.
    """
    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"  # escapes C0 itself
    return _UNPRINTABLE.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # a JSON escape is UTF-16: a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def render(report: Mapping[str, Any], form: str) -> str:
    """The report as text in ``form`` (one of :data:`FORMATS`).

    Raises:
        ReportError: for an unknown form.
    """
    renderers = {"terminal": render_text, "json": dump_json, "md": render_markdown, "html": render_html}
    if form not in renderers:
        raise ReportError(f"unknown report format {form!r}; choose one of {list(FORMATS)}")
    return renderers[form](report)


def report_paths(target: str | os.PathLike[str], formats: Iterable[str]) -> dict[str, Path]:
    """Where :func:`write_report` puts each form.

    An existing folder gets ``report.json``, ``report.html``, ...; any other path
    is a stem, with a known suffix (``.json``, ``.md``, ``.html``, ``.txt``) dropped:
    ``out/run.report.json`` -> ``out/run.report.json`` and ``out/run.report.html``.
    """
    target = Path(target)
    if target.is_dir():
        stem = target / DEFAULT_STEM
    elif target.suffix in FILE_SUFFIXES.values():
        stem = target.with_suffix("")
    else:
        stem = target
    return {form: stem.with_name(stem.name + FILE_SUFFIXES[form]) for form in formats}


def write_report(
    report: Mapping[str, Any], target: str | os.PathLike[str], formats: Iterable[str] = ("json", "html")
) -> dict[str, Path]:
    """Validate ``report`` and write it in each of ``formats``, each file atomically.

    Returns:
        The path written for each form.

    Raises:
        ReportError: if the document does not match the schema, a form is unknown, a form
            other than JSON is asked of a report larger than the renderer draws
            (:func:`~albsnn_compress.report.tables.check_renderable`), or the target folder does
            not exist; in each case before any file is written.
    """
    forms = list(formats)
    unknown = [form for form in forms if form not in FORMATS]
    if unknown:
        raise ReportError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    validate_report(report)
    if any(form != "json" for form in forms):
        check_renderable(report)  # at once, before a chart is drawn
    paths = report_paths(target, forms)
    for path in paths.values():
        if not path.parent.is_dir():
            raise ReportError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    texts = {form: render(report, form) for form in paths}  # every form, before the first file is written
    for form, path in paths.items():
        atomic_write_text(path, texts[form])
    return paths
