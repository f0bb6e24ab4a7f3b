"""``albsnn-compress eval FILE``: top-1 accuracy of a container or a checkpoint on a dataset split."""

from __future__ import annotations

from pathlib import Path

import click

from albsnn_compress.cli.options import data_root_option, device_option
from albsnn_compress.data.registry import DATASETS, dataset_info, load_split
from albsnn_compress.errors import DatasetError
from albsnn_compress.files.model_cost import fitting_batch_size
from albsnn_compress.model_file import load_model_file
from albsnn_compress.snn.spec import accepts_input_shape
from albsnn_compress.training.distributed import init_distributed
from albsnn_compress.training.trainer import evaluate

__all__ = ["command"]


@click.command("eval")
@click.argument(
    "model_file", metavar="FILE.albsnn|model.pt", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@data_root_option
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True, help="Split to score.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images per forward pass (lowered so one pass needs at most 1 GiB of activations).",
)
@click.option(
    "--dataset",
    type=click.Choice(sorted(DATASETS)),
    default=None,
    help="Dataset to score on, instead of the one the file's metadata names.",
)
@device_option
def command(
    model_file: Path, data_root: Path | None, split: str, batch_size: int, dataset: str | None, device: str
) -> None:
    """Print the top-1 accuracy of a container or checkpoint on a dataset split."""
    opened = load_model_file(model_file)
    model, dataset = opened.model, dataset or opened.dataset
    if dataset is None:
        raise click.BadParameter(
            f"{model_file} names no dataset (metadata key 'dataset'); pass one", param_hint="--dataset"
        )
    expected = tuple(dataset_info(dataset).input_shape)
    if not accepts_input_shape(model.spec, expected):
        raise DatasetError(
            f"{model_file}: the model takes inputs of shape {model.spec['input']['shape']}, "
            f"{dataset} images are {list(expected)}; pass the dataset it was trained on with --dataset"
        )
    ctx = init_distributed(device)
    data = load_split(dataset, data_root, split)
    accuracy = evaluate(model, data, ctx, batch_size=fitting_batch_size(model.spec, model.timesteps, batch_size))
    if ctx.is_main:
        click.echo(f"{model_file}: {dataset} {split} top-1 accuracy {accuracy:.2f}% ({len(data)} images)")
