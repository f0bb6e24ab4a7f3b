"""``albsnn-compress export FILE.albsnn -o model.onnx``: write a compressed model as ONNX (or, with
``--format c -o folder/``, as a folder of C99 for microcontrollers).

Every output is checked before the container is read: the place can be written, and no
output file is the input container, a symbolic link, a folder or a special file (the rules
of :func:`~albsnn_compress.files.output_paths.check_output_target`); the C folder is written
as one complete set with its ``manifest.json`` last.

For C, each conv or linear layer over spikes runs the dense or the event-driven kernel
(``--kernels auto|dense|events``). ``auto`` measures each layer's input density on the first
``--calibration-images`` training images of the dataset the container names (its metadata's
``dataset``; ``--data-root`` where its files are) and runs events where the density is low
enough (:func:`~albsnn_compress.formats.c.plan.plan_model`); without a dataset, or with
``--calibration-images 0``, spike maps are taken as sparse. The kernel of each layer, and the
density it was chosen by, is printed and listed in the folder's README.

``--target NAME`` refuses, in one line and before anything is written, a model that does not run
on that hardware bit for bit (:func:`~albsnn_compress.targets.check_target`)."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.cli.options import data_root_option
from albsnn_compress.data.registry import DATASETS, load_split
from albsnn_compress.errors import DatasetError
from albsnn_compress.files.atomic import remove_stale_temporaries
from albsnn_compress.files.output_paths import check_output_file, check_output_folder, writing
from albsnn_compress.formats.c.export import KERNEL_CHOICES, CExport, c_output_set, export_c
from albsnn_compress.formats.container.file import Container, read_container
from albsnn_compress.formats.nir.optional import export_nir
from albsnn_compress.formats.onnx.export import WEIGHT_MODES, export_onnx
from albsnn_compress.precision import FLOAT_BITS, layer_bits
from albsnn_compress.targets import TARGETS, check_target

__all__ = ["CALIBRATION_IMAGES", "command"]

CALIBRATION_IMAGES = 256
"""Training images the C export measures each layer's input density on, by default."""


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
@click.option(
    "--kernels",
    type=click.Choice(KERNEL_CHOICES),
    default="auto",
    show_default=True,
    help="--format c: per layer over spikes, the event-driven or the dense kernel by its measured input density "
    "(auto), or the same kernel everywhere.",
)
@click.option(
    "--calibration-images",
    type=click.IntRange(min=0),
    default=CALIBRATION_IMAGES,
    show_default=True,
    help="--format c: training images to measure each layer's input density on (0: none, spike maps taken as sparse).",
)
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    default=None,
    help="Refuse, before writing anything, a model that does not run on this hardware bit for bit (a layer at "
    "bits it does not take, float included where it takes no float layers): "
    + ", ".join(TARGETS)
    + " (compress --help describes them).",
)
@data_root_option
def command(
    container: Path,
    output: Path,
    output_format: str,
    onnx_weights: str,
    kernels: str,
    calibration_images: int,
    target: str | None,
    data_root: Path | None,
) -> None:
    """Export a .albsnn container to ONNX that stock onnxruntime runs, to C for microcontrollers, or to NIR."""
    if output_format != "c" and (kernels != "auto" or calibration_images != CALIBRATION_IMAGES):
        raise click.BadParameter(f"applies to --format c only, not {output_format}", param_hint="'--kernels'")
    if output_format == "nir":
        _export_nir(container, output, target)
        return
    if output_format == "c":
        if output.is_dir() or not output.exists():  # an existing file: export_c names it (nothing is written)
            check_output_folder(output, parents=False)  # before reading and translating the model
            c_output_set(output, inputs=(container,)).prepare()  # every name: not the input, no link, no FIFO
        opened = _read(container, target)
        model = opened.model
        calibration, source = _calibration(opened.metadata.get("dataset"), data_root, calibration_images)
        with writing(output):
            export = export_c(model, output, inputs=(container,), calibration=calibration, kernels=kernels)
        click.echo(
            f"{output}: {len(export.files)} files, {export.weight_bytes} bytes const (flash), "
            f"{export.arena_bytes} bytes arena (RAM), {_packed_layers(model)} packed, "
            f"T={model.timesteps}"
        )
        _echo_kernels(export, kernels, source)
        return
    if output.is_dir():
        raise click.BadParameter(
            f"File {click.format_filename(output)!r} is a directory.", param_hint="'-o' / '--output'"
        )
    # a missing or unwritable folder, a file on the way, the input itself, a link, a FIFO or a device:
    # refused before the export
    check_output_file(output, inputs=(container,))
    _remove_stale_temporaries(output, container)
    model = _read(container, target).model
    with writing(output):
        export_onnx(model, output, weights=onnx_weights)
    click.echo(
        f"{output}: {output.stat().st_size} bytes, {_packed_layers(model)} stored {onnx_weights}, T={model.timesteps}"
    )


def _packed_layers(model: nn.Module) -> str:
    """``3 binarized layer(s)``, and ``and 2 at 2-8 bits`` when the model has such layers."""
    k_bit = sum(1 for bits in layer_bits(model).values() if 1 < bits < FLOAT_BITS)
    return f"{len(binarized_layers(model))} binarized layer(s)" + (f" and {k_bit} at 2-8 bits" if k_bit else "")


def _read(container: Path, target: str | None) -> Container:
    """The container, its model checked against ``target`` when one is named (before anything is written).

    Raises:
        CompressionError: a layer does not run on the target (:func:`~albsnn_compress.targets.check_target`).
    """
    opened = read_container(container)
    if target is not None:
        check_target(opened.model, TARGETS[target])
    return opened


def _calibration(dataset: object, data_root: Path | None, count: int) -> tuple[torch.Tensor | None, str]:
    """The first ``count`` training images of ``dataset`` for measuring input densities, and where they came
    from (or why there are none: no dataset named, ``count`` 0, its files missing, a warning on stderr)."""
    if count == 0:
        return None, "no calibration images (--calibration-images 0)"
    if not isinstance(dataset, str) or dataset not in DATASETS:
        return None, "no calibration images (the container names no known dataset)"
    try:
        train = load_split(dataset, data_root, "train")
    except DatasetError as exc:
        click.echo(f"warning: kernels chosen without calibration images: {exc}", err=True)
        return None, f"no calibration images ({dataset} could not be read; pass --data-root)"
    count = min(count, len(train))
    return train.as_float(torch.arange(count)), f"input densities measured on {count} {dataset} training images"


def _echo_kernels(export: CExport, kernels: str, source: str) -> None:
    """Each conv or linear layer's kernel and the density it was chosen by."""
    click.echo(f"kernels: {kernels}, {source}")
    for layer in export.kernels:
        density = "" if layer.density is None else f" (input density {layer.density:.3f})"
        click.echo(f"  {layer.label}: {layer.function}{density}")


def _export_nir(container: Path, output: Path, target: str | None) -> None:
    """``--format nir``: the graph of the container's model, batch norms folded, binary structure recorded."""
    if output.is_dir():
        raise click.BadParameter(
            f"File {click.format_filename(output)!r} is a directory.", param_hint="'-o' / '--output'"
        )
    check_output_file(output, inputs=(container,))  # as for ONNX, before the export
    _remove_stale_temporaries(output, container)
    model = _read(container, target).model
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
