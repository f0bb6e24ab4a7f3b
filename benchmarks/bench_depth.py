"""Search cost against network depth: ``adaptive`` vs ``oracle`` vs ``all`` on 4, 8 and 16 candidate layers.

``oracle`` pays one finetuning slice per candidate layer, so its cost grows
linearly with depth; ``adaptive`` binarizes groups and pays per wrong estimate,
so its cost should grow more slowly. For each preset ``depth-4``, ``depth-8``
and ``depth-16`` (4, 8 and 16 candidate convolutions, see
``albsnn_compress/snn/presets.py``) this trains a model briefly, then runs the
three strategies at one budget and reports, per strategy: wall time,
finetuning epochs, finetuning slices, storage saved (computed bits), the
measured validation drop; per depth: the oracle/adaptive cost ratios and the
Spearman rank correlation of each estimator's per-layer values with the
per-layer drops ``oracle`` measured (estimator fidelity, as in
``bench_search``).

Run from the repository root::

    python -m benchmarks.bench_depth              # digits, 40 training epochs per depth (minutes)
    python -m benchmarks.bench_depth --quick      # depths 4 and 8, 3 training epochs, tiny finetuning (toy size)
    python -m benchmarks.bench_depth --dataset fashion-mnist --data-root ../shared/datasets \
        --train-subset 10000 --train-epochs 6     # 6,000 validation images: one image is 0.017 points

The bundled digits have 144 validation images, so one image is 0.69
percentage points: the default budget of 1.0 point affords one more error, and
which strategy "wins" is decided by one or two images. On FashionMNIST the
validation split has 6,000 images; ``--train-subset`` keeps training and
finetuning affordable on a CPU (the validation split stays whole).
Wall times are on a CPU that may be shared: the result records the load
average and torch's thread count; compare strategies by their ratios in one
run. ``--quick`` uses one thread (toy models gain nothing from more).
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.registry import load_splits
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.bench_search import estimator_values, fidelity_spearman, summarize
from benchmarks.machine import write_result

__all__ = ["main", "run_benchmark", "DEPTHS", "finite_or_none", "training_subset"]

DEPTHS = (4, 8, 16)
STRATEGIES = ("adaptive", "oracle", "all")
_FULL = {"train_epochs": 40.0, "epochs": 1.0, "trial_epochs": 0.25, "bn_batches": 20}
_QUICK = {"train_epochs": 3.0, "epochs": 0.1, "trial_epochs": 0.1, "bn_batches": 4}
_QUICK_DEPTHS = (4, 8)


def finite_or_none(value: float) -> float | None:
    """``None`` for NaN (Spearman of a constant column), so the JSON stays standard."""
    return None if math.isnan(value) else value


def _search(model, splits, budget: float, strategy: str, estimator: str, base: dict[str, Any]) -> dict[str, Any]:
    config = SearchConfig(strategy=strategy, estimator=estimator, **base)
    start = time.perf_counter()
    result = compress(model, splits["train"], splits["val"], budget, test_data=splits["test"], config=config)
    summary = summarize(result, time.perf_counter() - start)
    summary["config"] = result.config
    summary["candidates"] = len(result.candidates)
    return summary


def _ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """``oracle`` cost over ``adaptive`` cost (seconds, finetuning epochs, slices), per adaptive estimator."""
    oracle = next(r for r in runs if r["strategy"] == "oracle")
    ratios = {}
    for run in (r for r in runs if r["strategy"] == "adaptive"):
        ratios[run["estimator"]] = {
            key: (oracle[key] / run[key] if run[key] else None) for key in ("seconds", "finetune_epochs", "slices")
        }
    return ratios


def training_subset(data: ImageSet, size: int | None, seed: int) -> ImageSet:
    """The first ``size`` images of a fixed random order (all of them when ``size`` is None)."""
    if size is None or size >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[:size].sort().values)


def _one_depth(depth: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """Train ``depth-<depth>``, measure every estimator, run the strategies; one entry of the result."""
    arch = f"depth-{depth}"
    splits = load_splits(args.dataset, args.data_root)
    splits["train"] = training_subset(splits["train"], args.train_subset, args.seed)
    Console().print(
        f"[bold]{arch}[/]: training {settings['train_epochs']:g} epochs on {len(splits['train'])} {args.dataset} images"
    )
    trained = train_model(
        TrainRequest(
            dataset=args.dataset,
            arch=arch,
            config=TrainConfig(epochs=settings["train_epochs"], seed=args.seed),
            splits=splits,
        )
    )
    model = trained.model
    base = {key: settings[key] for key in ("epochs", "trial_epochs", "bn_batches")} | {"seed": args.seed}
    base["precisions"] = (1,)  # the binary-or-float search's cost with depth (all, by default, would take 1-8 bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant column; the NaN is reported as null
        estimates = estimator_values(model, splits, SearchConfig(**base))
    runs = []
    for strategy in STRATEGIES:
        for estimator in args.estimators if strategy == "adaptive" else args.estimators[:1]:
            runs.append(_search(model, splits, args.budget, strategy, estimator, base))
            run = runs[-1]
            Console().print(
                f"  {strategy}/{estimator}: {len(run['selected'])} binarized, "
                f"drop {run['val_drop']:.2f}, {run['seconds']:.1f} s"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fidelity = {
            name: finite_or_none(rho)
            for name, rho in fidelity_spearman(estimates, next(r for r in runs if r["strategy"] == "oracle")).items()
        }
    return {
        "depth": depth,
        "arch": arch,
        "train": {
            "epochs": settings["train_epochs"],
            "seconds": trained.seconds,
            "val_accuracy": trained.val_accuracy,
            "test_accuracy": trained.test_accuracy,
            "images": len(splits["train"]),
            "val_images": len(splits["val"]),
        },
        "estimates": estimates,
        "fidelity_spearman": fidelity,
        "runs": runs,
        "oracle_over_adaptive": _ratios(runs),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every depth in ``args.depths``; returns the JSON-able result."""
    settings = dict(_QUICK if args.quick else _FULL)
    if args.train_epochs is not None:
        settings["train_epochs"] = args.train_epochs
    depths = args.depths or list(_QUICK_DEPTHS if args.quick else DEPTHS)
    load_before = os.getloadavg()
    results = [_one_depth(depth, args, settings) for depth in depths]
    return {
        "dataset": args.dataset,
        "budget": args.budget,
        "settings": settings | {"seed": args.seed, "estimators": args.estimators, "train_subset": args.train_subset},
        "quick": args.quick,
        "depths": results,
        "threads": torch.get_num_threads(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_tables(payload: dict[str, Any], console: Console | None = None) -> None:
    """Per-strategy runs, then per-depth cost ratios and estimator fidelity."""
    console = console or Console()
    runs = Table(
        title=(
            f"search cost vs depth on {payload['dataset']}, budget {payload['budget']:g} pts (val = validation split)"
        ),
        title_justify="left",
    )
    for column in (
        "depth",
        "strategy",
        "binarized",
        "saved %",
        "val drop",
        "test after",
        "ft epochs",
        "slices",
        "seconds",
    ):
        runs.add_column(column, justify="left" if column == "strategy" else "right")
    for entry in payload["depths"]:
        for run in entry["runs"]:
            label = f"{run['strategy']}/{run['estimator']}" if run["strategy"] == "adaptive" else run["strategy"]
            runs.add_row(
                str(entry["depth"]),
                label,
                f"{len(run['selected'])}/{run['candidates']}",
                f"{run['storage_saved_percent']:.1f}",
                f"{run['val_drop']:.2f}",
                f"{run['accuracy'].get('test_after', float('nan')):.2f}",
                f"{run['finetune_epochs']:.2f}",
                str(run["slices"]),
                f"{run['seconds']:.1f}",
            )
    console.print(runs)
    estimators = sorted(payload["depths"][0]["fidelity_spearman"])
    summary = Table(title="per depth: oracle/adaptive cost and Spearman(estimate, oracle drop)", title_justify="left")
    for column in (
        "depth",
        "val acc (trained)",
        "adaptive",
        "time ratio",
        "ft-epoch ratio",
        "slice ratio",
        *estimators,
    ):
        summary.add_column(column, justify="right")
    for entry in payload["depths"]:
        for estimator, ratio in entry["oracle_over_adaptive"].items():
            summary.add_row(
                str(entry["depth"]),
                f"{entry['train']['val_accuracy']:.2f}",
                estimator,
                _ratio(ratio["seconds"]),
                _ratio(ratio["finetune_epochs"]),
                _ratio(ratio["slices"]),
                *(
                    "-" if entry["fidelity_spearman"][e] is None else f"{entry['fidelity_spearman'][e]:+.2f}"
                    for e in estimators
                ),
            )
    console.print(summary)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="toy size: depths 4 and 8, 3 training epochs, 0.1-epoch slices, 1 thread"
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        choices=DEPTHS,
        default=None,
        help="candidate-layer counts (default 4 8 16; 4 8 with --quick)",
    )
    parser.add_argument("--dataset", default="digits", help="dataset to train and search on")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset (not needed for digits)")
    parser.add_argument(
        "--train-epochs", type=float, default=None, help="training epochs per depth (default 40; 3 with --quick)"
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="train and finetune on this many training images (fixed seed); validation stays whole",
    )
    parser.add_argument("--budget", type=float, default=1.0, help="allowed validation drop, percentage points")
    parser.add_argument(
        "--estimators", nargs="+", default=["weight"], help="estimators for adaptive (the first is used for the others)"
    )
    parser.add_argument("--seed", type=int, default=0, help="training and search seed")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's; 1 with --quick)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="folder for the JSON result (default benchmarks/results)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the tables, write ``depth[-quick].json``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    try:
        payload = run_benchmark(args)
    except AlbsnnError as exc:  # a wrong dataset, data root or budget: one line, exit 2
        parser.exit(2, f"error: {exc}\n")
    print_tables(payload)
    path = write_result(
        "depth-quick" if args.quick else "depth", payload, args.results, module="benchmarks.bench_depth", argv=argv
    )
    Console().print(f"wrote {path}")


if __name__ == "__main__":
    main()
