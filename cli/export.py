"""``albsnn-compress export FILE.albsnn -o model.onnx``: write a compressed model as ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.formats.container import read_container
from albsnn_compress.formats.onnx_export import WEIGHT_MODES, export_onnx

__all__ = ["command"]


@click.command("export")
@click.argument("container", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option(
    "--onnx-weights", type=click.Choice(WEIGHT_MODES), default="packed", show_default=True,
    help="Store binarized weights at 1 bit (unpacked in the graph, opset 18) or as float32.",
)
def command(container: Path, output: Path, onnx_weights: str) -> None:
    """Export a .albsnn container to ONNX that stock onnxruntime runs."""
    if not output.parent.exists():
        raise click.BadParameter(f"folder {output.parent} does not exist; create it first", param_hint="--output")
    model = read_container(container).model
    export_onnx(model, output, weights=onnx_weights)
    binary = len(binarized_layers(model))
    click.echo(
        f"{output}: {output.stat().st_size} bytes, {binary} binarized layer(s) stored {onnx_weights}, "
        f"T={model.timesteps}"
    )
