"""``albsnn-compress report``: show a saved storage report in any form."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from albsnn_compress.cli.terminal import plain_line, render_terminal
from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.files.output_paths import check_output_file, writing
from albsnn_compress.files.output_set import verify_output_set
from albsnn_compress.report import FORMATS, load_report, render
from albsnn_compress.report.tables import check_renderable

__all__ = ["command"]


@click.command("report")
@click.argument("report_file", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "form",
    type=click.Choice(FORMATS),
    default="terminal",
    show_default=True,
    help="Form: terminal tables, JSON, Markdown (md) or self-contained HTML.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write instead of printing.",
)
def command(report_file: Path, form: str, output: Path | None) -> None:
    """Show a storage report (a compress run's report.json) as tables, JSON, Markdown or HTML."""
    if output is not None:
        check_output_file(output, inputs=(report_file,))  # before reading and rendering; never the report itself
    report = load_report(report_file)
    if form != "json":
        check_renderable(report)  # a refusal is the only line printed, before the manifest's warning
    run_set = verify_output_set(report_file)
    if not run_set.complete and run_set.problem is not None:  # no manifest, or one its files do not match
        click.echo(f"warning: {plain_line(run_set.problem)}", err=True)
    if output is None:
        if form == "terminal":
            render_terminal(report, Console())
        else:
            click.echo(render(report, form), nl=False)
        return
    text = render(report, form)
    with writing(output):
        atomic_write_text(output, text)
    click.echo(f"{form} report -> {plain_line(output)}")
