"""The storage-savings report: one versioned JSON document, rendered as text tables, Markdown or HTML.

It says what a run saved in storage and, with an ``operations`` section (schema version 3; the
pipeline always adds it), in synaptic operations, bytes moved and estimated energy per inference.

Flow: :func:`build_report` turns a :class:`~albsnn_compress.search.result.CompressionResult`
and the files a run wrote into the JSON document; every other form is rendered
from that document (never from the result object), so ``albsnn-compress report
report.json`` reproduces any form later. The report reads results and file
sizes; it never drives a search or writes a model, and it never prints (the
command line draws the tables with rich: ``albsnn_compress.cli.terminal``).

Example:
    >>> report = build_report(result, input_checkpoint="model.pt",  # doctest: +SKIP
    ...                       container="out/model.albsnn", onnx="out/model.onnx")
    >>> write_report(report, "out", formats=("json", "html"))  # doctest: +SKIP
    >>> print(render_text(load_report("out/report.json")))  # doctest: +SKIP
"""

from albsnn_compress.report.build import build_report, file_entry
from albsnn_compress.report.files import FORMATS, dump_json, render, report_paths, write_report
from albsnn_compress.report.html import render_html
from albsnn_compress.report.markdown import render_markdown
from albsnn_compress.report.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    load_report,
    parse_report,
    validate_report,
)
from albsnn_compress.report.text import render_text

__all__ = [
    "FORMATS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "build_report",
    "dump_json",
    "file_entry",
    "load_report",
    "parse_report",
    "render",
    "render_html",
    "render_markdown",
    "render_text",
    "report_paths",
    "validate_report",
    "write_report",
]
