"""``albsnn-compress train``: train a spiking network and write a checkpoint.

With ``--binarize adaptive --budget B`` (ALBSNN's own mode, :mod:`albsnn_compress.train_binarized`),
the first ``--warmup-share`` of the epochs train in float, then the compression search binarizes
the layers the budget affords during the rest; the checkpoint records the binarized layers,
the search's decisions and the history."""

from __future__ import annotations

import warnings
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
from albsnn_compress.errors import BudgetError
from albsnn_compress.files.safe_text import visible
from albsnn_compress.search import SearchConfig, check_budget
from albsnn_compress.search.budget import BudgetWarning
from albsnn_compress.search.strategies import STRATEGIES
from albsnn_compress.snn.presets import PRESETS
from albsnn_compress.train_binarized import (
    BINARIZE_MODES,
    DEFAULT_WARMUP_SHARE,
    AdaptiveTrainRequest,
    AdaptiveTrainResult,
    train_binarized,
)
from albsnn_compress.training.distributed import init_distributed
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig

__all__ = ["command"]


def _budget(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return check_budget(value)
    except BudgetError as exc:
        raise click.BadParameter(str(exc)) from exc


def _warmup_share(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not 0.0 < value < 1.0:
        raise click.BadParameter(
            f"{value:g} is not strictly between 0 and 1 (the share of the epochs trained in float before "
            f"binarization starts); pass e.g. --warmup-share {DEFAULT_WARMUP_SHARE}"
        )
    return value


def _check_combination(binarize: str, budget: float | None, warmup_share: float | None, strategy: str | None) -> None:
    """Refuse flags that only mean something in another mode, naming the fix (one line, exit status 2)."""
    if binarize == "adaptive":
        if budget is None:
            raise click.UsageError(
                "--binarize adaptive needs --budget POINTS (the validation accuracy the binarization may cost, "
                "in percentage points); add e.g. --budget 0.5"
            )
        return
    flags = (("--budget", budget), ("--warmup-share", warmup_share), ("--strategy", strategy))
    given = [flag for flag, value in flags if value is not None]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} only applies with --binarize adaptive; add --binarize adaptive, or drop "
            f"{' and '.join(given)} to train in float"
        )


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
@click.option(
    "--val-share",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=None,
    help="Fraction of the training images held out for validation, recorded in the checkpoint so that compress "
    "decides on the same images [default: 0.1; with --binarize adaptive, the share that resolves --budget "
    "(0.23 for 0.2 points on FashionMNIST), at least 0.1, at most 0.5]. A compress budget below what its "
    "validation split resolves prints the share to train with.",
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
@click.option(
    "--binarize",
    type=click.Choice(BINARIZE_MODES),
    default="none",
    show_default=True,
    help="none: train the float network. adaptive: ALBSNN's own mode: train in float for --warmup-share of the "
    "epochs, then the compression search binarizes the layers --budget affords (first and last stay float) while it "
    "finetunes for the remaining epochs.",
)
@click.option(
    "--budget",
    callback=_budget,
    default=None,
    metavar="POINTS",
    help="With --binarize adaptive (required there): allowed loss in PERCENTAGE POINTS of top-1 validation accuracy "
    "against the float warm-up model, on the validation split (0.5 = 0.5 points).",
)
@click.option(
    "--warmup-share",
    type=float,
    callback=_warmup_share,
    default=None,
    help=f"With --binarize adaptive: the share of --epochs trained in float before binarization, strictly between "
    f"0 and 1 [default: {DEFAULT_WARMUP_SHARE}].",
)
@click.option(
    "--strategy",
    type=click.Choice(list(STRATEGIES)),
    default=None,
    help=f"With --binarize adaptive: how the search chooses layers [default: the search's, {SearchConfig.strategy}].",
)
@quiet_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (model.pt; with --binarize adaptive its binarized layers and the search's decisions "
    "recorded); checked writable before training starts.",
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
    val_share: float | None,
    seed: int,
    device: str,
    amp: bool,
    sync_bn: bool,
    compile_steps: bool,
    channels_last: bool,
    binarize: str,
    budget: float | None,
    warmup_share: float | None,
    strategy: str | None,
    quiet: bool,
    output: Path,
) -> None:
    """Train a spiking network and write a checkpoint (same seed, same machine: the same bytes).

    With --binarize adaptive --budget B, layers are binarized during training (ALBSNN's own mode).
    """
    _check_combination(binarize, budget, warmup_share, strategy)
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
    request = TrainRequest(
        dataset, str(data_root) if data_root else None, arch, timesteps, config, output, val_share=val_share
    )
    if binarize == "adaptive" and budget is not None:  # _check_combination refused adaptive without a budget
        if not ctx.is_main:
            warnings.simplefilter("ignore", BudgetWarning)  # the main process says it once
        adaptive = AdaptiveTrainRequest(
            request, budget, DEFAULT_WARMUP_SHARE if warmup_share is None else warmup_share, strategy
        )
        with progress_bars(enabled=ctx.is_main and not quiet) as on_progress:
            binarized = train_binarized(adaptive, ctx, on_progress)
        if ctx.is_main:
            _print_binarized(f"{dataset} {arch} T={timesteps}", binarized, output)
        return
    with progress_bars(enabled=ctx.is_main and not quiet) as on_progress:
        result = train_model(request, ctx, on_progress)
    if ctx.is_main:
        click.echo(
            f"{dataset} {arch} T={timesteps}: val {result.val_accuracy:.2f}%  test {result.test_accuracy:.2f}%  "
            f"({result.seconds:.0f} s) -> {output}"
        )


def _print_binarized(run: str, result: AdaptiveTrainResult, output: Path) -> None:
    """The summary line, then the search's verdict on each candidate layer and why."""
    search = result.search
    accuracy = search.accuracy
    click.echo(
        f"{run}: val {result.val_accuracy:.2f}%  test {result.test_accuracy:.2f}%  ({result.seconds:.0f} s) -> {output}"
    )
    warmup_epochs = result.metadata["binarization"]["warmup_epochs"]
    val_images = search.paired["val"].images if "val" in search.paired else None
    click.echo(
        f"validation split: {result.metadata['val_share']:.0%} of the training images"
        + (f" ({val_images:,})" if val_images else "")
        + " (recorded; compress decides on the same images)"
    )
    click.echo(
        f"float warm-up {warmup_epochs:g} epochs: val {accuracy['val_before']:.2f}%; "
        f"binarized {len(search.binarized)} of {len(search.candidates)} candidate layers, val drop "
        f"{search.val_drop:+.2f} points (budget {search.budget:g}, strategy {search.strategy})"
    )
    for decision in search.decisions:
        verdict = "1-bit" if decision.binarized else "float"
        click.echo(visible(f"  {decision.name.rsplit('.', 1)[-1]}: {verdict}  ({decision.reason})"))
