"""``albsnn-compress [compress] model.pt --budget B``: search, finetune, pack, report."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
from rich.console import Console

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
from albsnn_compress.cli.terminal import plain, render_terminal
from albsnn_compress.data.registry import DATASETS
from albsnn_compress.errors import BudgetError, CompressionError
from albsnn_compress.pipeline import OUTPUT_FORMATS, CompressOutcome, CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig, check_budget
from albsnn_compress.search.budget import BudgetWarning
from albsnn_compress.search.config import check_precisions
from albsnn_compress.search.estimators import ESTIMATORS
from albsnn_compress.search.strategies import RECOMMENDED_PRECISIONS, STRATEGIES
from albsnn_compress.targets import TARGETS, Target
from albsnn_compress.training.distributed import init_distributed

__all__ = ["command"]


def _budget(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return check_budget(value)
    except BudgetError as exc:
        raise click.BadParameter(str(exc)) from exc


def _formats(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    """Comma-separated output formats; the container and ONNX are always written."""
    formats = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown:
        raise click.BadParameter(f"unknown format {unknown[0]!r}; choose among {', '.join(OUTPUT_FORMATS)}")
    return formats


def _precisions(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """Comma-separated bits per weight, e.g. ``1,2,4,8``; ``None`` (not given): the strategy's own."""
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of bits per weight such as 1,2,4,8")
    try:
        return check_precisions([int(part) for part in parts], "--precisions")
    except CompressionError as exc:
        raise click.BadParameter(str(exc)) from exc


def _names(value: str | None) -> list[str]:
    """Comma-separated layer names (short or full; the library resolves them)."""
    return [name.strip() for name in value.split(",") if name.strip()] if value else []


@click.command("compress")
@click.argument("checkpoint", metavar="MODEL.pt|NET.nir", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--budget",
    required=True,
    callback=_budget,
    metavar="POINTS",
    help="Allowed loss in PERCENTAGE POINTS of top-1 validation accuracy vs the input model (0.2 = 0.2 points; "
    "a plain decimal from 0 to 100).",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: <checkpoint stem>-albsnn/ next to it); checked writable before the search, "
    "its files replaced as one set with manifest.json last.",
)
@data_root_option
@click.option(
    "--dataset",
    type=click.Choice(sorted(DATASETS)),
    default=None,
    help="Dataset the model was trained on (needed for a NIR file; a checkpoint names its own).",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    default=None,
    help="Time steps for a NIR file (default: the one the file records).",
)
@click.option(
    "--strategy",
    type=click.Choice(list(STRATEGIES)),
    default=SearchConfig.strategy,
    show_default=True,
    help="How layers are chosen: recover (every candidate binary, the run recovers them, the estimates choose "
    "which return to float when over budget), adaptive (estimator-guided trials), oracle, all, none.",
)
@click.option(
    "--estimator",
    type=click.Choice(list(ESTIMATORS)),
    default=SearchConfig.estimator,
    show_default=True,
    help="Accuracy-loss estimator.",
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0),
    default=SearchConfig.epochs,
    show_default=True,
    help="Finetuning epochs of the whole run (recover: the run every binary layer recovers in; over budget, a "
    "float control of the same length and one --trial-epochs slice per layer returned to float come on top).",
)
@click.option(
    "--trial-epochs",
    type=click.FloatRange(min=0),
    default=SearchConfig.trial_epochs,
    show_default=True,
    help="Finetuning epochs after each tried change (adaptive) or layer returned to float (recover).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=SearchConfig.lr,
    show_default=True,
    help="Finetuning peak learning rate (AdamW, cosine).",
)
@click.option(
    "--binary-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate of the binarized layers' latent weights (default: --lr).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=SearchConfig.batch_size,
    show_default=True,
    help="Global batch size.",
)
@click.option("--no-distill", is_flag=True, help="Finetune on labels only (no teacher).")
@click.option(
    "--layers",
    default=None,
    help="Comma-separated candidate layers (e.g. conv2,conv3); default: all but first and last.",
)
@click.option("--exclude", default=None, help="Comma-separated layers never to binarize.")
@click.option("--binarize-first-last", is_flag=True, help="Let the first and last layers be binarized too.")
@click.option(
    "--precisions",
    default=None,
    callback=_precisions,
    metavar="BITS",
    help="Bits per weight a layer may take, e.g. 1,2,4,8 (recover and all): each layer starts at its fewest and "
    "one that does not recover moves up a precision at a time, float above the highest. With 8 the first and last "
    "layers become 8-bit candidates. 1 is the binary-or-float search.  [default: "
    + ",".join(str(bits) for bits in RECOMMENDED_PRECISIONS)
    + " for recover and all, 1 for adaptive and oracle]",
)
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    default=None,
    help="Hardware the result must run on, checked bit for bit before anything is written: "
    + "; ".join(f"{name}, {entry.description}" for name, entry in TARGETS.items())
    + ". Layers take only the target's precisions; without float layers every layer is a candidate, none returns "
    "to float, and a budget missed at the highest precisions is an error (recover and all only). What the target "
    "needs beyond that is printed at the end, unchecked.",
)
@click.option(
    "--onnx-weights",
    type=click.Choice(["packed", "float"]),
    default="packed",
    show_default=True,
    help="ONNX weight storage.",
)
@click.option(
    "--formats",
    "output_formats",
    default="albsnn,onnx",
    show_default=True,
    callback=_formats,
    metavar="LIST",
    help=(
        "Files to write besides the report: albsnn and onnx always; add nir for NIR (float arrays, binary structure "
        "in metadata)."
    ),
)
@click.option(
    "--confidence",
    type=click.FloatRange(min=0.5, max=1.0, min_open=True, max_open=True),
    default=None,
    help="Accept a change only when the validation drop's one-sided upper bound at this confidence "
    "(e.g. 0.9) is within the budget, so it holds beyond the validation images; default: the measured drop.",
)
@seed_option
@device_option
@amp_option
@sync_bn_option
@channels_last_option
@quiet_option
def command(
    checkpoint: Path,
    budget: float,
    outdir: Path | None,
    data_root: Path | None,
    dataset: str | None,
    timesteps: int | None,
    strategy: str,
    estimator: str,
    epochs: float,
    trial_epochs: float,
    lr: float,
    binary_lr: float | None,
    batch_size: int,
    no_distill: bool,
    layers: str | None,
    exclude: str | None,
    binarize_first_last: bool,
    precisions: tuple[int, ...] | None,
    target: str | None,
    onnx_weights: str,
    output_formats: tuple[str, ...],
    confidence: float | None,
    seed: int,
    device: str,
    amp: bool,
    sync_bn: bool,
    channels_last: bool,
    quiet: bool,
) -> None:
    """Binarize the layers an accuracy budget affords; write .albsnn, ONNX and a report (from a checkpoint or a NIR
    file)."""
    ctx = init_distributed(device)
    if not ctx.is_main:
        warnings.simplefilter("ignore", BudgetWarning)  # the main process says it once
    config = SearchConfig(
        strategy=strategy,
        estimator=estimator,
        epochs=epochs,
        trial_epochs=trial_epochs,
        lr=lr,
        binary_lr=binary_lr,
        batch_size=batch_size,
        distill=not no_distill,
        seed=seed,
        layers=_names(layers) or None,
        exclude=_names(exclude),
        binarize_first_last=binarize_first_last,
        amp=amp,
        sync_bn=sync_bn,
        channels_last=channels_last,
        confidence=confidence,
        precisions=precisions,
        target=target,
    )
    outdir = outdir or checkpoint.with_name(f"{checkpoint.stem}-albsnn")
    request = CompressRequest(
        checkpoint,
        budget,
        config,
        outdir,
        data_root,
        onnx_weights,
        output_formats,
        dataset=dataset,
        timesteps=timesteps,
    )
    with progress_bars(enabled=ctx.is_main and not quiet) as on_progress:
        outcome = compress_checkpoint(request, ctx, on_progress)
    if ctx.is_main:
        _print_summary(outcome, TARGETS[target] if target is not None else None)


def _print_summary(outcome: CompressOutcome, target: Target | None) -> None:
    """The short terminal report (storage, accuracy, layers), the target's unchecked constraints and the files
    written."""
    # a log file or pipe has no width: use one wide enough for the layer table
    console = Console(width=None if sys.stdout.isatty() else 160)
    if outcome.report is not None:
        render_terminal(outcome.report, console, brief=True)
    if target is not None:
        _print_target(console, target)
    for label, path in outcome.files.items():
        console.print(plain(f"  {label}: {path}"))


def _print_target(console: Console, target: Target) -> None:
    """What was checked for ``target`` (every layer's bits and codes) and what was not (its ``unchecked`` list)."""
    floats = "float layers allowed" if target.float_layers else "no float layers"
    console.print(
        plain(f"target {target.name}: every conv and linear layer checked bit for bit ({floats}); not checked:")
    )
    for item in target.unchecked:
        console.print(plain(f"  - {item}"))
