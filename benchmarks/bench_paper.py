"""The paper table: our accuracy and storage next to the ALBSNN paper's rows.

Given a trained checkpoint, this reports its full-precision validation and test
accuracy, then runs the whole ``compress`` pipeline
(:func:`albsnn_compress.pipeline.compress_checkpoint`: search, ``.albsnn``
container, packed ONNX, report) at budgets 0, 0.2 and 1.0 percentage points and
reports, per budget: the layers binarized, validation and test accuracy,
storage saved as computed bits (:mod:`albsnn_compress.storage`, every stored
tensor, scales included) and on disk (container bytes against the checkpoint's
bytes), the ONNX file's bytes, and the search's time and finetuning epochs. The
training time and epochs come from the checkpoint's metadata.

The paper's rows (test accuracy at one time step, as published):

=============  ===========  =================
dataset        arXiv        journal version
=============  ===========  =================
FashionMNIST   92.92 %      93.39 %
CIFAR-10       91.63 %      92.12 %
CIFAR-100      63.54 %      69.55 %
=============  ===========  =================

and the claim "more than 20% storage saved without accuracy loss". Our CIFAR-10
numbers are measured on a lossy JPEG copy of CIFAR-10 and always carry the name
"CIFAR-10 (JPEG copy)".

Run from the repository root::

    python -m benchmarks.bench_paper --checkpoint ../runs/fmnist-vgg-T1.pt --data-root ../shared/datasets
    python -m benchmarks.bench_paper --quick       # trains its own digits model (toy size)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.pipeline import CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training.distributed import DistContext
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.machine import add_device_argument, device_context, write_result
from benchmarks.provenance import repo_relative

__all__ = ["main", "run_benchmark", "PAPER_ROWS", "DATASET_LABELS"]

PAPER_ROWS: dict[str, dict[str, float]] = {
    "fashion-mnist": {"arXiv": 92.92, "journal": 93.39},
    "cifar10": {"arXiv": 91.63, "journal": 92.12},
    "cifar100": {"arXiv": 63.54, "journal": 69.55},
}
PAPER_CLAIM = ">20% storage saved without accuracy loss"
DATASET_LABELS = {
    "digits": "digits (scikit-learn)",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "CIFAR-10 (JPEG copy)",
    "cifar100": "CIFAR-100",
}
_PAPER_LABELS = {"fashion-mnist": "FashionMNIST", "cifar10": "CIFAR-10 (official)", "cifar100": "CIFAR-100"}
_FULL = {"epochs": 1.0, "trial_epochs": 0.25}
_QUICK = {"epochs": 0.2, "trial_epochs": 0.2, "train_epochs": 8.0}


def _budget_run(
    checkpoint: Path, budget: float, config: SearchConfig, outdir: Path, data_root: str | None, ctx: DistContext
) -> dict[str, Any]:
    """One pipeline run at ``budget``: accuracy, storage in bits and on disk, search cost."""
    outcome = compress_checkpoint(
        CompressRequest(
            checkpoint=checkpoint,
            budget=budget,
            config=config,
            outdir=outdir / f"budget-{budget:g}",
            data_root=Path(data_root) if data_root else None,
        ),
        ctx,
    )
    result = outcome.result
    bits_before, bits_after = total_bits(layer_storage(result.model, result.binarized))
    checkpoint_bytes = checkpoint.stat().st_size
    container_bytes = outcome.files["container"].stat().st_size
    return {
        "budget": budget,
        "selected": result.binarized,
        "candidates": result.candidates,
        "accuracy": result.accuracy,
        "val_drop": result.val_drop,
        "bits_before": bits_before,
        "bits_after": bits_after,
        "storage_saved_percent_bits": 100.0 * (1 - bits_after / bits_before),
        "checkpoint_bytes": checkpoint_bytes,
        "container_bytes": container_bytes,
        "onnx_bytes": outcome.files["onnx"].stat().st_size,
        "storage_saved_percent_disk": 100.0 * (1 - container_bytes / checkpoint_bytes),
        "finetune_epochs": result.finetune_epochs,
        "search_seconds": result.timings["total"],
    }


def _training(metadata: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """Training epochs and accuracy as the checkpoint recorded them, and the training time if this run trained it.

    Checkpoints hold no wall time (the same seed gives the same bytes), so ``seconds`` is
    ``None`` for a checkpoint trained elsewhere.
    """
    return {
        "seconds": seconds,
        "epochs": (metadata.get("train_config") or {}).get("epochs"),
        "world_size": metadata.get("world_size"),
        "accuracy": metadata.get("accuracy"),
    }


def run_benchmark(
    args: argparse.Namespace, checkpoint: Path, outdir: Path, train_seconds: float | None = None
) -> dict[str, Any]:
    """Every budget on ``checkpoint``; returns the JSON-able result.

    ``train_seconds``: how long this run took to train ``checkpoint``, if it trained it.
    """
    saved = read_checkpoint(checkpoint)
    dataset = saved.metadata.get("dataset")
    settings = dict(_QUICK if args.quick else _FULL)
    for key in ("epochs", "trial_epochs"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    config = SearchConfig(
        strategy=args.strategy,
        estimator=args.estimator,
        epochs=settings["epochs"],
        trial_epochs=settings["trial_epochs"],
        seed=args.seed,
        precisions=(1,),  # the paper's table: 1 bit or float per layer
    )
    ctx = device_context(args.device)
    load_before = os.getloadavg()
    runs = []
    for budget in args.budgets:
        runs.append(_budget_run(checkpoint, budget, config, outdir, args.data_root, ctx))
        run = runs[-1]
        Console().print(
            f"budget {budget:g}: {len(run['selected'])}/{len(run['candidates'])} binarized, "
            f"drop {run['val_drop']:.2f} pts"
        )
    return {
        "checkpoint": repo_relative(str(checkpoint)),
        "dataset": dataset,
        "dataset_label": DATASET_LABELS.get(dataset, str(dataset)),
        "arch": saved.spec["name"],
        "timesteps": saved.timesteps,
        "training": _training(saved.metadata, train_seconds),
        "full_precision": {key: runs[0]["accuracy"][key] for key in ("val_before", "test_before")},
        "search": {"strategy": args.strategy, "estimator": args.estimator, "seed": args.seed, **settings},
        "device": str(ctx.device),
        "quick": args.quick,
        "runs": runs,
        "paper": {"rows": PAPER_ROWS.get(dataset), "claim": PAPER_CLAIM, "timesteps": 1, "split": "test"},
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def print_tables(payload: dict[str, Any], console: Console | None = None) -> None:
    """Our rows (full precision, then each budget), then the paper's rows for the same dataset."""
    console = console or Console()
    training = payload["training"]
    trained = (
        f"trained {training['epochs']:g} epochs in {training['seconds']:.0f} s"
        if training["seconds"] is not None
        else "training time not recorded in the checkpoint"
    )
    table = Table(
        title=f"{payload['dataset_label']}, {payload['arch']}, T={payload['timesteps']} (accuracy in percent)",
        caption=f"{trained}; search: {payload['search']['strategy']}/{payload['search']['estimator']}, "
        f"{payload['search']['epochs']:g}+{payload['search']['trial_epochs']:g} epochs; saved = 1 - after/before; "
        f"paper: test accuracy, {PAPER_CLAIM}",
        title_justify="left",
    )
    for column in (
        "row",
        "budget",
        "binarized",
        "val acc",
        "test acc",
        "saved % (bits)",
        "saved % (disk)",
        "container B",
        "onnx B",
        "search s",
    ):
        table.add_column(column, justify="left" if column == "row" else "right")
    full = payload["full_precision"]
    table.add_row(
        "ours, full precision",
        "-",
        "0",
        f"{full['val_before']:.2f}",
        f"{full['test_before']:.2f}",
        "0.0",
        "-",
        "-",
        "-",
        "-",
    )
    for run in payload["runs"]:
        acc = run["accuracy"]
        table.add_row(
            "ours, compressed",
            f"{run['budget']:g}",
            f"{len(run['selected'])}/{len(run['candidates'])}",
            f"{acc['val_after']:.2f}",
            f"{acc['test_after']:.2f}",
            f"{run['storage_saved_percent_bits']:.1f}",
            f"{run['storage_saved_percent_disk']:.1f}",
            f"{run['container_bytes']:,}",
            f"{run['onnx_bytes']:,}",
            f"{run['search_seconds']:.0f}",
        )
    paper = payload["paper"]["rows"]
    for version, accuracy in (paper or {}).items():
        label = _PAPER_LABELS[payload["dataset"]]
        table.add_row(
            f"paper ({version}), {label}, T=1", "-", "-", "-", f"{accuracy:.2f}", ">20 (claim)", "-", "-", "-", "-"
        )
    console.print(table)
    if not paper:
        console.print(
            f"the paper has no row for {payload['dataset_label']}; its rows: "
            + "; ".join(f"{_PAPER_LABELS[d]} {r['arXiv']:.2f} / {r['journal']:.2f}" for d, r in PAPER_ROWS.items())
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="toy size: train a digits-small model (8 epochs), 0.2-epoch finetuning, 1 thread",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained model.pt (required unless --quick)")
    parser.add_argument(
        "--data-root", default=None, help="folder holding the checkpoint's dataset (not needed for digits)"
    )
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=[0.0, 0.2, 1.0],
        help="budgets, percentage points of validation accuracy",
    )
    parser.add_argument("--strategy", default=SearchConfig.strategy, help="search strategy (default: the package's)")
    parser.add_argument(
        "--estimator", default=SearchConfig.estimator, help="estimator for adaptive (default: the package's)"
    )
    parser.add_argument(
        "--epochs", type=float, default=None, help="final finetuning epochs (default 1; 0.2 with --quick)"
    )
    parser.add_argument(
        "--trial-epochs",
        type=float,
        default=None,
        help="finetuning epochs per tried change (default 0.25; 0.2 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="search seed (and training seed with --quick)")
    add_device_argument(parser)
    parser.add_argument(
        "--outdir",
        type=Path,
        default=None,
        help="keep the containers, ONNX files and reports here (default: a temporary folder)",
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="folder for the JSON result (default benchmarks/results)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the table, write ``paper-<dataset>.json`` (``paper-quick.json``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.quick:
        parser.error("--checkpoint is required (or pass --quick to train a toy digits model)")
    if args.quick:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, train_seconds = args.checkpoint, None
        if checkpoint is None:
            checkpoint = Path(tmp) / "digits.pt"
            trained = train_model(
                TrainRequest(config=TrainConfig(epochs=_QUICK["train_epochs"], seed=args.seed), output=checkpoint)
            )
            train_seconds = trained.seconds
        try:
            payload = run_benchmark(args, checkpoint, args.outdir or Path(tmp), train_seconds)
        except AlbsnnError as exc:  # a bad checkpoint, missing data root, wrong strategy: one line, exit 2
            parser.exit(2, f"error: {exc}\n")
    print_tables(payload)
    name = "paper-quick" if args.quick else f"paper-{payload['dataset']}-{payload['arch']}-T{payload['timesteps']}"
    Console().print(f"wrote {write_result(name, payload, args.results, module='benchmarks.bench_paper', argv=argv)}")


if __name__ == "__main__":
    main()
