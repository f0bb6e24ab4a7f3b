"""Options shared by several commands, so each is declared (and documented) once."""

from __future__ import annotations

from pathlib import Path

import click

from albsnn_compress.seeds import MAX_SEED

__all__ = [
    "device_option",
    "seed_option",
    "data_root_option",
    "quiet_option",
    "amp_option",
    "sync_bn_option",
    "channels_last_option",
]

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help=(
        "Where to compute: auto|cpu|cuda|cuda:N (auto picks CUDA when present; under torchrun, cuda is "
        "cuda:LOCAL_RANK)."
    ),
)
amp_option = click.option("--amp", is_flag=True, help="Mixed precision (bfloat16 autocast) when training on CUDA.")
sync_bn_option = click.option(
    "--sync-bn",
    is_flag=True,
    help="Under torchrun, batch-norm statistics over the global batch, not each process's share.",
)
channels_last_option = click.option(
    "--channels-last",
    is_flag=True,
    help=(
        "Train and finetune with weights and images in channels-last layout (faster on CPU); not bit-identical to "
        "the default."
    ),
)
seed_option = click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help=f"Seed that fixes the result (0 to {MAX_SEED}).",
)
data_root_option = click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the dataset files (not needed for the bundled digits).",
)
quiet_option = click.option("--quiet", is_flag=True, help="Hide progress bars.")
