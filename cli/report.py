"""``albsnn-compress report``: show a saved storage report in any form."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from albsnn_compress.atomic import atomic_write_text
from albsnn_compress.cli.terminal import render_terminal
from albsnn_compress.report import FORMATS, load_report, render

__all__ = ["command"]


@click.command("report")
@click.argument("report_file", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "form", type=click.Choice(FORMATS), default="terminal", show_default=True,
              help="Form: terminal tables, JSON, Markdown (md) or self-contained HTML.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write instead of printing.")
def command(report_file: Path, form: str, output: Path | None) -> None:
    """Show a storage report (a compress run's report.json) as tables, JSON, Markdown or HTML."""
    report = load_report(report_file)
    if output is None:
        if form == "terminal":
            render_terminal(report, Console())
        else:
            click.echo(render(report, form), nl=False)
        return
    if not output.parent.is_dir():
        raise click.BadParameter(f"folder {output.parent} does not exist; create it first", param_hint="--output")
    atomic_write_text(output, render(report, form))
    click.echo(f"{form} report -> {output}")
