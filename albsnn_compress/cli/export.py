"""``albsnn-compress export FILE.albsnn -o model.onnx``: write a compressed model as ONNX (or, with
``--format c -o folder/``, as a folder of C99 for microcontrollers).

Every output is checked before the container is read: the place can be written, and no
output file is the input container, a symbolic link, a folder or a special file (the rules
of :func:`~albsnn_compress.files.output_paths.check_output_target`); the C folder is written
as one complete set with its ``manifest.json`` last."""

from __future__ import annotations

from pathlib import Path

import click

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.files.atomic import remove_stale_temporaries
from albsnn_compress.files.output_paths import check_output_file, check_output_folder, writing
from albsnn_compress.formats.c.export import c_output_set, export_c
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.formats.nir.optional import export_nir
from albsnn_compress.formats.onnx.export import WEIGHT_MODES, export_onnx

__all__ = ["command"]


@click.command("export")
@click.argument("container", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="ONNX file to write (a folder for --format c).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("onnx", "c", "nir")),
    default="onnx",
    show_default=True,
    help="ONNX for onnxruntime, a folder of C99 (1-bit weights kept packed) for microcontrollers, "
    "or NIR (HDF5, float arrays) for snnTorch, SpikingJelly and neuromorphic toolchains.",
)
@click.option(
    "--onnx-weights",
    type=click.Choice(WEIGHT_MODES),
    default="packed",
    show_default=True,
    help="Store binarized weights at 1 bit (unpacked in the graph, opset 18) or as float32.",
)
def command(container: Path, output: Path, output_format: str, onnx_weights: str) -> None:
    """Export a .albsnn container to ONNX that stock onnxruntime runs, to C for microcontrollers, or to NIR."""
    if output_format == "nir":
        _export_nir(container, output)
        return
    if output_format == "c":
        if output.is_dir() or not output.exists():  # an existing file: export_c names it (nothing is written)
            check_output_folder(output, parents=False)  # before reading and translating the model
            c_output_set(output, inputs=(container,)).prepare()  # every name: not the input, no link, no FIFO
        model = read_container(container).model
        with writing(output):
            export = export_c(model, output, inputs=(container,))
        click.echo(
            f"{output}: {len(export.files)} files, {export.weight_bytes} bytes const (flash), "
            f"{export.arena_bytes} bytes arena (RAM), {len(binarized_layers(model))} binarized layer(s) packed, "
            f"T={model.timesteps}"
        )
        return
    if output.is_dir():
        raise click.BadParameter(
            f"File {click.format_filename(output)!r} is a directory.", param_hint="'-o' / '--output'"
        )
    # a missing or unwritable folder, a file on the way, the input itself, a link, a FIFO or a device:
    # refused before the export
    check_output_file(output, inputs=(container,))
    _remove_stale_temporaries(output, container)
    model = read_container(container).model
    with writing(output):
        export_onnx(model, output, weights=onnx_weights)
    binary = len(binarized_layers(model))
    click.echo(
        f"{output}: {output.stat().st_size} bytes, {binary} binarized layer(s) stored {onnx_weights}, "
        f"T={model.timesteps}"
    )


def _export_nir(container: Path, output: Path) -> None:
    """``--format nir``: the graph of the container's model, batch norms folded, binary structure recorded."""
    if output.is_dir():
        raise click.BadParameter(
            f"File {click.format_filename(output)!r} is a directory.", param_hint="'-o' / '--output'"
        )
    check_output_file(output, inputs=(container,))  # as for ONNX, before the export
    _remove_stale_temporaries(output, container)
    model = read_container(container).model
    with writing(output):
        info = export_nir(model, output)
    click.echo(
        f"{output}: {info.file_bytes} bytes, {len(info.nodes)} NIR nodes, T={info.timesteps}, dt={info.dt:g} s; "
        f"binary up to a per-channel scale: {', '.join(info.binary_layers) or 'none'} (NIR stores them as float32)"
    )


def _remove_stale_temporaries(output: Path, container: Path) -> None:
    """The temporary files a killed export of ``output`` left beside it (``.NAME.XXXXXXXX.tmp``; never the input)."""
    with writing(output.parent):
        remove_stale_temporaries(output.parent, [output.name], keep=(container,))
