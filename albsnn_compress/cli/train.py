"""``albsnn-compress train``: train a spiking network and write a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from albsnn_compress.cli.options import (
    amp_option,
    channels_last_option,
    data_root_option,
    device_option,
    quiet_option,
    seed_option,
    sync_bn_option,
)
from albsnn_compress.cli.progress import progress_bars
from albsnn_compress.data.registry import DATASETS
from albsnn_compress.snn.presets import PRESETS
from albsnn_compress.training.distributed import init_distributed
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig

__all__ = ["command"]


@click.command("train")
@click.option(
    "--dataset", type=click.Choice(sorted(DATASETS)), default="digits", show_default=True, help="Dataset to train on."
)
@data_root_option
@click.option(
    "--arch", default="digits-small", show_default=True, help=f"Preset ({', '.join(PRESETS)}) or a JSON spec file."
)
@click.option(
    "--timesteps", "-T", type=click.IntRange(min=1), default=1, show_default=True, help="Simulation time steps."
)
@click.option(
    "--epochs", type=click.FloatRange(min=0, min_open=True), default=20, show_default=True, help="Training epochs."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Global batch size; at most the training split's image count (a larger one is refused before training).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=5e-3,
    show_default=True,
    help="Peak learning rate (AdamW, cosine).",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Decoupled weight decay (AdamW).",
)
@click.option(
    "--augment/--no-augment",
    default=None,
    help="Random crop (padding 4) and horizontal flip of each training batch; default: the dataset's "
    "(on for CIFAR, off for FashionMNIST and digits).",
)
@seed_option
@device_option
@amp_option
@sync_bn_option
@click.option(
    "--compile",
    "compile_steps",
    is_flag=True,
    help=(
        "Compile the training steps with torch.compile: tens of seconds up front, faster steps after; not "
        "bit-identical to eager."
    ),
)
@channels_last_option
@quiet_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (model.pt); checked writable before training starts.",
)
def command(
    dataset: str,
    data_root: Path | None,
    arch: str,
    timesteps: int,
    epochs: float,
    batch_size: int,
    lr: float,
    weight_decay: float,
    augment: bool | None,
    seed: int,
    device: str,
    amp: bool,
    sync_bn: bool,
    compile_steps: bool,
    channels_last: bool,
    quiet: bool,
    output: Path,
) -> None:
    """Train a spiking network and write a checkpoint (same seed, same machine: the same bytes)."""
    ctx = init_distributed(device)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        augment=augment,
        amp=amp,
        sync_bn=sync_bn,
        compile=compile_steps,
        channels_last=channels_last,
    )
    request = TrainRequest(dataset, str(data_root) if data_root else None, arch, timesteps, config, output)
    with progress_bars(enabled=ctx.is_main and not quiet) as on_progress:
        result = train_model(request, ctx, on_progress)
    if ctx.is_main:
        click.echo(
            f"{dataset} {arch} T={timesteps}: val {result.val_accuracy:.2f}%  test {result.test_accuracy:.2f}%  "
            f"({result.seconds:.0f} s) -> {output}"
        )
