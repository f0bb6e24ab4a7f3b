"""The binary-aware finetuning recipe, one ablation row per recipe, on fixed layer sets.

Each row binarizes a fixed set of layers (or none: the float control), finetunes
it with one recipe (epochs, learning rates, distillation weight) as one cosine
slice, re-estimates batch norm and measures the paired drop against the input
model on the validation and the test split (lost and gained images, the exact
95 % interval). No search runs: the rows say what a recipe recovers, which is
what the search's defaults are chosen from (docs/method.md, "The binary-aware
recipe").

Rows run in ``--jobs`` worker processes and each row's record is written to
``--cells`` as soon as it finishes, so a rerun skips the rows already measured.

    python -m benchmarks.bench_recipe --checkpoint benchmarks/checkpoints/fmnist-vgg-T1-aug40.pt \\
        --data-root ../shared/datasets --rows control-lr1e-3 all-lr1e-2 all-blr1e-2 \\
        --jobs 2 --threads 1 --cells ../runs/recipe-cells --name recipe-fmnist-aug40
    python -m benchmarks.bench_recipe --quick     # digits, toy size, seconds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.registry import load_splits, recorded_val_share
from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.protocol import StrategySession
from albsnn_compress.storage import layer_storage, total_bits
from benchmarks.bench_trust import paired_record
from benchmarks.machine import RESULTS, write_result
from benchmarks.provenance import repo_relative
from benchmarks.quick import quick_defaults

__all__ = ["Recipe", "RECIPES", "run_row", "main"]

ALL = ("conv2", "conv3", "conv4", "conv5")  # every candidate of fmnist-vgg (first and last stay float)


@dataclass(frozen=True)
class Recipe:
    """One ablation row: which layers are binary and how the network is finetuned."""

    layers: tuple[str, ...]
    epochs: float = 8.0
    lr: float = 1e-3
    binary_lr: float | None = None
    distill_weight: float = 0.5
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    "control-lr1e-3": Recipe(()),
    "control-lr1e-3-kd1": Recipe((), distill_weight=1.0),
    "all-lr1e-3": Recipe(ALL),
    "all-lr1e-2": Recipe(ALL, lr=1e-2),
    "all-blr1e-2": Recipe(ALL, binary_lr=1e-2),
    "all-blr1e-2-kd1": Recipe(ALL, binary_lr=1e-2, distill_weight=1.0),
    "all-blr3e-2": Recipe(ALL, binary_lr=3e-2),
    "all-blr1e-2-e4": Recipe(ALL, binary_lr=1e-2, epochs=4.0),
    "all-blr1e-2-seed1": Recipe(ALL, binary_lr=1e-2, seed=1),
    "all-lr1e-2-seed2": Recipe(ALL, lr=1e-2, seed=2),
    "all-lr1e-2-seed3": Recipe(ALL, lr=1e-2, seed=3),
    "all-lr1e-2-e16-seed2": Recipe(ALL, epochs=16.0, lr=1e-2, seed=2),
    "all-lr1e-2-e16-seed3": Recipe(ALL, epochs=16.0, lr=1e-2, seed=3),
}


def _fixed(layers: tuple[str, ...], epochs: float) -> Any:
    """A strategy that binarizes exactly ``layers``, finetunes ``epochs`` as one slice and measures."""

    def fixed(session: StrategySession) -> None:
        chosen = [name for name in session.candidates if name.split(".")[-1] in layers]
        session.binarize(chosen)
        for name in session.candidates:
            session.decide(name, name in chosen, "fixed by the recipe row")
        session.finetune(epochs, "recipe")
        session.measure()
        session.record("final", [])

    return fixed


def run_row(name: str, checkpoint: str, data_root: str | None, threads: int, quick: bool) -> dict[str, Any]:
    """Finetune one recipe row and measure it on validation and test against the input model."""
    torch.set_num_threads(threads)
    recipe = RECIPES[name]
    loaded = read_checkpoint(Path(checkpoint))
    root = Path(data_root) if data_root else None
    splits = load_splits(loaded.metadata["dataset"], root, val_share=recorded_val_share(loaded.metadata))
    epochs = min(recipe.epochs, 0.5) if quick else recipe.epochs
    config = SearchConfig(
        strategy=_fixed(recipe.layers, epochs),
        epochs=epochs,
        lr=recipe.lr,
        binary_lr=recipe.binary_lr,
        distill_weight=recipe.distill_weight,
        seed=recipe.seed,
        layers=None if quick else list(ALL),
    )
    started = time.perf_counter()
    result = compress(loaded.build(), splits["train"], splits["val"], 100.0, test_data=splits["test"], config=config)
    before, after = total_bits(layer_storage(result.model, result.binarized))
    return {
        "row": name,
        "recipe": asdict(recipe),
        "binarized": result.binarized,
        "storage_saved_percent": 100.0 * (1 - after / before),
        "accuracy": result.accuracy,
        "val": paired_record(result.paired["val"]),
        "test": paired_record(result.paired["test"]),
        "finetune_epochs": result.finetune_epochs,
        "seconds": time.perf_counter() - started,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as docs/method.md shows them (drops in points with their 95 % intervals)."""

    def drop(record: dict[str, Any]) -> str:
        low, high = record["interval95_points"]
        return f"{record['drop_points']:+.2f} [{low:+.2f}, {high:+.2f}]"

    lines = [
        "| row | binarized | saved, % | epochs | lr float / binary | distill λ | seed | val drop, pts [95 %] | "
        "val changed | test drop, pts [95 %] | test changed | seconds |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        recipe = row["recipe"]
        binary_lr = recipe["binary_lr"] if recipe["binary_lr"] is not None else recipe["lr"]
        layers = ",".join(n.split(".")[-1] for n in row["binarized"]) or "none (control)"
        lines.append(
            f"| {row['row']} | {layers} | {row['storage_saved_percent']:.1f} | {row['finetune_epochs']:.2f} | "
            f"{recipe['lr']:g} / {binary_lr:g} | {recipe['distill_weight']:g} | {recipe['seed']} | "
            f"{drop(row['val'])} | "
            f"{row['val']['lost'] + row['val']['gained']} | {drop(row['test'])} | "
            f"{row['test']['lost'] + row['test']['gained']} | {row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _run_rows(args: argparse.Namespace, cells: Path) -> list[dict[str, Any]]:
    """Run the rows not yet in ``cells``, in the order given, then read them all."""
    cells.mkdir(parents=True, exist_ok=True)
    todo = [row for row in args.rows if not (cells / f"{row}.json").exists()]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(run_row, row, str(args.checkpoint), args.data_root, args.threads, args.quick): row
            for row in todo
        }
        for future, row in futures.items():
            record = future.result()
            atomic_write_text(cells / f"{row}.json", json.dumps(record, indent=1))
            print(
                f"{row}: val {record['val']['drop_points']:+.2f}  test {record['test']['drop_points']:+.2f}  "
                f"{record['seconds']:.0f} s",
                flush=True,
            )
    return [json.loads((cells / f"{row}.json").read_text()) for row in args.rows]


def main(argv: list[str] | None = None) -> None:
    """Run the missing rows, then write ``NAME.json`` and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="model.pt (--quick: a fresh digits model)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--rows", nargs="+", default=list(RECIPES), choices=list(RECIPES), help="recipe rows to run")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()), help="torch threads per worker")
    parser.add_argument("--cells", type=Path, default=None, help="folder for one record per row")
    parser.add_argument("--name", default=None, help="result name (default recipe, quick-recipe with --quick)")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON result")
    parser.add_argument("--quick", action="store_true", help="toy size on the bundled digits")
    parser.add_argument("--table", type=Path, default=None, metavar="RESULT.json", help="only print a result's table")
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())["rows"]))
        return
    if args.quick:
        quick_defaults(args)
        args.rows = args.rows[:3] if args.rows == list(RECIPES) else args.rows
    if args.checkpoint is None:
        parser.error("--checkpoint is required without --quick")
    name = args.name or ("quick-recipe" if args.quick else "recipe")
    folder = args.results or RESULTS
    rows = _run_rows(args, args.cells or folder / f"{name}-cells")
    payload = {
        "checkpoint": repo_relative(str(args.checkpoint)),
        "dataset": read_checkpoint(args.checkpoint).metadata["dataset"],
        "rows": rows,
    }
    path = write_result(name, payload, folder, module="benchmarks.bench_recipe", argv=argv)
    print(markdown_table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
