"""ALBSNN's own mode against compressing after training: the same epochs, the same budget, judged on the test split.

Per seed, two runs from scratch with the same recipe (dataset, architecture,
epochs, learning rate, weight decay, augmentation) and the same validation share:

* ``adaptive``: ``train --binarize adaptive --budget B`` (:func:`albsnn_compress.train_binarized.train_binarized`):
  the first ``--warmup-share`` of the epochs in float, the search binarizing during the rest;
* ``after``: ``train`` in float for all the epochs, then ``compress --budget B`` with the
  search's defaults (its own finetuning comes on top: the record states every run's total epochs).

Both hold out the validation share ``train --binarize adaptive`` chooses for the budget
(:func:`~albsnn_compress.search.paired_drop.val_share_to_resolve`), so they decide on the same
images. Each record holds the layers binarized, the weight bits saved, the float model's and the
final model's test accuracy, the total epochs and the wall time.

``NAME.png`` beside the JSON plots test accuracy against weight bits saved and against total epochs.

Runs go to ``--jobs`` worker processes and each record to ``--cells`` as soon as it finishes, so a
rerun skips the runs already measured.

    python -m benchmarks.bench_albsnn_mode --dataset fashion-mnist --data-root ../shared/datasets \\
        --arch fmnist-vgg --epochs 40 --augment --weight-decay 0.01 --budget 0.2 --seeds 0 1 2 \\
        --jobs 2 --threads 1 --cells ../runs/mode-cells --name albsnn-mode-fmnist
    python -m benchmarks.bench_albsnn_mode --quick     # digits, a few epochs, a minute
    python -m benchmarks.bench_albsnn_mode --plot benchmarks/results/albsnn-mode-fmnist-e8.json   # its figure again
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.data.registry import VAL_FRACTION, load_splits
from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.paired_drop import val_share_to_resolve
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.train_binarized import DEFAULT_WARMUP_SHARE, AdaptiveTrainRequest, train_binarized
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.machine import RESULTS, write_result
from benchmarks.plots import figure_panels

__all__ = ["MODES", "Run", "run_one", "summarize", "markdown_table", "plot", "read_runs", "main"]

MODES = ("adaptive", "after")
Run = tuple[int, str]  # seed, mode


def _cell_name(run: Run) -> str:
    return f"seed{run[0]}-{run[1]}.json"


def shared_val_share(args: argparse.Namespace) -> float:
    """The share both modes hold out: the one ``train --binarize adaptive`` picks for the budget."""
    splits = load_splits(args.dataset, args.data_root, ("train", "val"))
    needed = val_share_to_resolve(args.budget, len(splits["train"]) + len(splits["val"]))
    return VAL_FRACTION if needed is None else max(VAL_FRACTION, needed)


def _request(args: argparse.Namespace, seed: int, val_share: float) -> TrainRequest:
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, augment=args.augment, seed=seed
    )
    return TrainRequest(args.dataset, args.data_root, args.arch, args.timesteps, config, val_share=val_share)


def _saved_percent(model: torch.nn.Module, binarized: list[str]) -> float:
    before, after = total_bits(layer_storage(model, binarized))
    return 100.0 * (1 - after / before)


def run_one(run: Run, args: argparse.Namespace, val_share: float) -> dict[str, Any]:
    """One run from scratch; what it binarized, saved and scored on the test split."""
    torch.set_num_threads(args.threads)
    seed, mode = run
    request = _request(args, seed, val_share)
    started = time.perf_counter()
    if mode == "adaptive":
        adaptive = train_binarized(AdaptiveTrainRequest(request, args.budget, args.warmup_share))
        search, float_test = adaptive.search, adaptive.warmup.test_accuracy
        total_epochs = adaptive.warmup.metadata["train_config"]["epochs"] + search.finetune_epochs
    else:
        trained = train_model(request)
        splits = load_splits(args.dataset, args.data_root, val_share=val_share)
        search = compress(
            trained.model,
            splits["train"],
            splits["val"],
            args.budget,
            test_data=splits["test"],
            config=SearchConfig(  # 1 bit or float per layer, as ALBSNN's mode decides
                seed=seed, precisions=(1,), **({"epochs": args.search_epochs} if args.search_epochs else {})
            ),
        )
        float_test = trained.test_accuracy
        total_epochs = args.epochs + search.finetune_epochs
    return {
        "seed": seed,
        "mode": mode,
        "train_epochs": args.epochs,
        "budget": args.budget,
        "val_share": val_share,
        "val_images": search.paired["val"].images,
        "binarized": search.binarized,
        "storage_saved_percent": _saved_percent(search.model, search.binarized),
        "float_test_accuracy": float_test,
        "test_accuracy": search.accuracy["test_after"],
        "val_drop_points": search.val_drop,
        "total_epochs": total_epochs,
        "seconds": time.perf_counter() - started,
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode: median [min, max] over seeds of the test accuracy, bits saved, total epochs and seconds."""
    rows = []
    for mode in MODES:
        runs = [r for r in records if r["mode"] == mode]
        if runs:
            rows.append(
                {
                    "mode": mode,
                    "runs": len(runs),
                    **{
                        key: {
                            "median": statistics.median(r[key] for r in runs),
                            "min": min(r[key] for r in runs),
                            "max": max(r[key] for r in runs),
                        }
                        for key in ("test_accuracy", "storage_saved_percent", "total_epochs", "seconds")
                    },
                }
            )
    return rows


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per run, as docs/method.md shows them."""
    lines = [
        "| seed | mode | binarized | saved, % | float test, % | final test, % | val drop, pts | total epochs "
        "| seconds |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(records, key=lambda r: (r["mode"], r["seed"])):
        layers = ",".join(name.split(".")[-1] for name in r["binarized"]) or "none"
        lines.append(
            f"| {r['seed']} | {r['mode']} | {layers} | {r['storage_saved_percent']:.1f} | "
            f"{r['float_test_accuracy']:.2f} | {r['test_accuracy']:.2f} | {r['val_drop_points']:+.2f} | "
            f"{r['total_epochs']:.1f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy against weight bits saved and against total epochs, one point per run; a series per mode and
    training length (``train_epochs``), ``after`` drawn first so that an ``adaptive`` run on the same spot shows;
    the float models that ``after`` compressed as grey points at 0 % saved."""
    panels = (
        ("weight bits saved, %", "test accuracy, %", "Accuracy vs storage: each point one seed"),
        ("total epochs (training and the search's finetuning)", "test accuracy, %", "Accuracy vs cost"),
    )
    groups = sorted({(r["mode"], r["train_epochs"]) for r in records}, key=lambda g: (g[0] != "after", g[1]))
    markers = {"adaptive": "o", "after": "s"}
    with figure_panels(path, (10, 4), *panels) as (storage, cost):
        floats = [r for r in records if r["mode"] == "after"]
        storage.scatter(
            [0.0] * len(floats), [r["float_test_accuracy"] for r in floats], color="grey", label="float (after: input)"
        )
        for (mode, epochs), color in zip(groups, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red")):
            runs = [r for r in records if (r["mode"], r["train_epochs"]) == (mode, epochs)]
            what = "train --binarize adaptive" if mode == "adaptive" else "train, then compress"
            label = f"{what}, {epochs:g} training epochs"
            for axes, key in ((storage, "storage_saved_percent"), (cost, "total_epochs")):
                accuracy = [r["test_accuracy"] for r in runs]
                axes.scatter(
                    [r[key] for r in runs], accuracy, color=color, marker=markers[mode], s=50, alpha=0.8, label=label
                )
        storage.set_xlim(-5, 100)


def read_runs(results: list[Path]) -> list[dict[str, Any]]:
    """Every run of the written results, each with its ``train_epochs`` (from the result's settings when the run
    predates the field)."""
    runs = []
    for result in results:
        written = json.loads(result.read_text())
        runs += [{"train_epochs": written["settings"]["epochs"], **run} for run in written["runs"]]
    return runs


def _run_all(args: argparse.Namespace, cells_dir: Path) -> list[dict[str, Any]]:
    """Run what ``cells_dir`` lacks (seed-major), then read every record."""
    cells_dir.mkdir(parents=True, exist_ok=True)
    runs = [(seed, mode) for seed in args.seeds for mode in args.modes]
    todo = [run for run in runs if not (cells_dir / _cell_name(run)).exists()]
    val_share = shared_val_share(args)
    # spawn, not fork: a forked child of a process whose OpenMP pool is running can hang
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, run, args, val_share): run for run in todo}
        for future, run in futures.items():
            record = future.result()
            atomic_write_text(cells_dir / _cell_name(run), json.dumps(record, indent=1))
            print(
                f"{_cell_name(run)}: {','.join(record['binarized']) or 'none'}  saved "
                f"{record['storage_saved_percent']:.1f} %  test {record['test_accuracy']:.2f} %  "
                f"{record['seconds']:.0f} s",
                flush=True,
            )
    return [json.loads((cells_dir / _cell_name(run)).read_text()) for run in runs]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--arch", default="digits-small")
    parser.add_argument("--timesteps", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=20.0, help="training epochs of both modes")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true", default=None)
    parser.add_argument("--budget", type=float, default=0.2, help="percentage points")
    parser.add_argument("--warmup-share", type=float, default=DEFAULT_WARMUP_SHARE)
    parser.add_argument(
        "--search-epochs", type=float, default=None, help="compress's finetuning epochs in 'after' (default: its own)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="which of the two modes to run (default both)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()), help="torch threads per worker")
    parser.add_argument("--cells", type=Path, default=None, help="folder for one record per run")
    parser.add_argument("--name", default=None, help="result name (default albsnn-mode, quick-albsnn-mode)")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON result")
    parser.add_argument("--quick", action="store_true", help="digits, 10 epochs, 1 seed, budget 5 points")
    parser.add_argument(
        "--plot",
        type=Path,
        nargs="+",
        default=None,
        metavar="RESULT.json",
        help="only draw the written results' runs into one figure (--results/--name.png; default beside the first)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the missing runs, then write ``NAME.json`` (summary and every record) and print the table."""
    args = _parser().parse_args(argv)
    if args.plot is not None:
        first = args.plot[0]
        plot(read_runs(args.plot), (args.results or first.parent) / f"{args.name or first.stem}.png")
        return
    if args.quick:
        args.dataset, args.arch, args.epochs, args.budget, args.search_epochs = "digits", "digits-small", 10.0, 5.0, 2.0
        args.seeds = args.seeds[:1]
        args.results = args.results or RESULTS / "quick"
    name = args.name or ("quick-albsnn-mode" if args.quick else "albsnn-mode")
    folder = args.results or RESULTS
    records = _run_all(args, args.cells or folder / f"{name}-cells")
    payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("cells", "results")}, "runs": records}
    payload["summary"] = summarize(records)
    path = write_result(name, payload, folder, module="benchmarks.bench_albsnn_mode", argv=argv)
    plot(read_runs([path]), path.with_suffix(".png"))
    print(markdown_table(records))
    print(f"wrote {path} and its .png")


if __name__ == "__main__":
    main()
