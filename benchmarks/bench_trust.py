"""Does the budget hold on data the search never saw? Seeds x budgets x confidence, judged on the test split.

Each cell of the grid is one ``compress`` run of the same checkpoint with one
seed, budget, confidence level (``none``: decide on the measured drop) and
finetuning length. A run's decisions see only the validation split; the test
split is the unseen data. Per cell the result records the layers binarized,
storage saved, and on both splits the paired drop (images lost and gained, the
exact 95 % interval). Per group of seeds it summarises how often the test-split
drop exceeded the budget, and the median and range of storage saved, test drop
and cost, and plots test drop against storage saved.

Cells run in ``--jobs`` worker processes (each with ``--threads`` torch threads)
and each cell's record is written to ``--cells`` as soon as it finishes, so an
interrupted grid keeps what it measured and a rerun skips the cells already there.

    python -m benchmarks.bench_trust --checkpoint benchmarks/checkpoints/fmnist-vgg-T1.pt \\
        --data-root ../shared/datasets --seeds 0 1 2 3 4 --budgets 0.2 1.0 --confidences none 0.9 \\
        --jobs 2 --cells ../runs/trust --name trust-fmnist
    python -m benchmarks.bench_trust --quick     # digits, toy size, seconds
    python -m benchmarks.bench_trust --disk RESULT.json     # add container bytes on disk to older cells
    python -m benchmarks.bench_trust --compare A.json B.json --name NAME   # size vs accuracy, one marker per result
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, cast

import torch

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.registry import load_splits, recorded_val_share
from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.formats.container.header import PREAMBLE, parse_preamble
from albsnn_compress.precision import set_precision_
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.paired_drop import PairedDrop
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.storage import layer_storage, total_bits
from benchmarks.machine import RESULTS, write_result
from benchmarks.plots import figure_panels
from benchmarks.provenance import repo_relative
from benchmarks.quick import quick_defaults

__all__ = [
    "Cell",
    "paired_record",
    "run_cell",
    "summarize",
    "plot",
    "plot_epochs",
    "plot_precision_sets",
    "plot_result",
    "markdown_table",
    "cells_table",
    "main",
]

DECISION_CONFIDENCE_SHOWN = 0.9  # the one-sided level every record also reports, whatever the run decided on

Cell = tuple[int, float, float | None, float]  # seed, budget (points), confidence (None: point drop), epochs


def paired_record(drop: PairedDrop) -> dict[str, Any]:
    low, high = drop.interval(0.95)
    return {
        "images": drop.images,
        "lost": drop.lost,
        "gained": drop.gained,
        "drop_points": drop.points,
        "interval95_points": [low, high],
        "upper90_points": drop.upper_bound(DECISION_CONFIDENCE_SHOWN),
    }


def disk_record(model: SpikingNet, checkpoint: str) -> dict[str, Any]:
    """The bytes of ``model``'s container on disk against the input checkpoint file, the share saved, and how many
    of the container's bytes are its JSON header."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.albsnn"
        write_container(path, model)
        container = path.stat().st_size
        with path.open("rb") as stream:
            _, _, header = parse_preamble(stream.read(PREAMBLE.size), container)
    source = Path(checkpoint).stat().st_size
    return {
        "container_bytes": container,
        "header_bytes": header,
        "checkpoint_bytes": source,
        "saved_percent": 100.0 * (1 - container / source),
    }


def _cell_name(cell: Cell) -> str:
    seed, budget, confidence, epochs = cell
    return (
        f"seed{seed}-budget{budget:g}-conf{'none' if confidence is None else f'{confidence:g}'}-epochs{epochs:g}.json"
    )


def run_cell(
    cell: Cell,
    checkpoint: str,
    data_root: str | None,
    threads: int,
    quick: bool,
    precisions: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """One compress run of the grid (layers at ``precisions``); what it chose and what that cost on validation and
    test."""
    torch.set_num_threads(threads)
    seed, budget, confidence, epochs = cell
    loaded = read_checkpoint(Path(checkpoint))
    root = Path(data_root) if data_root else None
    splits = load_splits(loaded.metadata["dataset"], root, val_share=recorded_val_share(loaded.metadata))
    config = SearchConfig(
        seed=seed, confidence=confidence, epochs=epochs, trial_epochs=0.1 if quick else 0.25, precisions=precisions
    )
    model = loaded.build()
    started = time.perf_counter()
    result = compress(model, splits["train"], splits["val"], budget, test_data=splits["test"], config=config)
    seconds = time.perf_counter() - started
    before, after = total_bits(layer_storage(result.model, result.binarized))
    test = result.paired["test"]
    return {
        "seed": seed,
        "budget": budget,
        "confidence": confidence,
        "epochs": epochs,
        "binarized": result.binarized,
        "precisions": result.precisions,
        "storage_saved_percent": 100.0 * (1 - after / before),
        "disk": disk_record(cast(SpikingNet, result.model), checkpoint),
        "accuracy": result.accuracy,
        "val": paired_record(result.paired["val"]),
        "test": paired_record(test),
        "test_exceeds_budget": test.points > budget,
        "control": paired_record(result.control) if result.control is not None else None,
        "decisions": {d.name: d.reason for d in result.decisions},
        "steps": [
            {"action": step.action, "layers": step.layers, "drop_points": step.drop_points}
            for step in result.trajectory
        ],
        "finetune_epochs": result.finetune_epochs,
        "slices": result.finetune_slices,
        "seconds": seconds,
        "estimator": result.estimator,
        "strategy": result.strategy,
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (budget, confidence, epochs): how often the test drop exceeded the budget, and medians and ranges."""
    groups: dict[tuple[float, float | None, float], list[dict[str, Any]]] = {}
    for record in cells:
        groups.setdefault((record["budget"], record["confidence"], record["epochs"]), []).append(record)
    rows = []
    for (budget, confidence, epochs), records in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0, kv[0][2])
    ):
        rows.append(
            {
                "budget": budget,
                "confidence": confidence,
                "epochs": epochs,
                "runs": len(records),
                "seeds": sorted(r["seed"] for r in records),
                "test_exceeds": sum(r["test_exceeds_budget"] for r in records),
                "val_exceeds": sum(r["val"]["drop_points"] > budget for r in records),
                "storage_saved_percent": _spread([r["storage_saved_percent"] for r in records]),
                "val_drop_points": _spread([r["val"]["drop_points"] for r in records]),
                "test_drop_points": _spread([r["test"]["drop_points"] for r in records]),
                "seconds": _spread([r["seconds"] for r in records]),
                "selections": sorted({_layers_text(r) for r in records}),
            }
        )
    return rows


def plot(cells: list[dict[str, Any]], path: Path) -> None:
    """Test drop against storage saved, one point per run; the budgets as dashed lines."""
    colors = dict(zip(sorted({c["budget"] for c in cells}), ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    panel = (
        "storage saved, % of the float model's bits",
        "test-split drop, points",
        "Budget vs unseen data: each point one seed (dashed: the budget)",
    )
    with figure_panels(path, (7.5, 4.5), panel) as (axes,):
        for (budget, confidence), marker in _series(cells):
            points = [c for c in cells if c["budget"] == budget and c["confidence"] == confidence]
            label = f"budget {budget:g}, " + ("measured drop" if confidence is None else f"{confidence:g} upper bound")
            axes.scatter(
                [c["storage_saved_percent"] for c in points],
                [c["test"]["drop_points"] for c in points],
                color=colors[budget],
                marker=marker,
                s=50,
                alpha=0.8,
                label=label,
            )
        for budget, color in colors.items():
            axes.axhline(budget, color=color, linestyle="--", linewidth=1)


def plot_epochs(cells: list[dict[str, Any]], path: Path) -> None:
    """Storage saved and test drop against finetuning epochs, one line per budget (median over seeds, range as bars)."""
    epochs_label = "finetuning epochs of the run (--epochs)"
    panels = (
        (epochs_label, "storage saved, %", "Storage saved vs finetuning length"),
        (epochs_label, "test-split drop, points (dashed: budget)", "Accuracy vs finetuning length"),
    )
    with figure_panels(path, (10, 4), *panels) as (storage, accuracy):
        for budget in sorted({c["budget"] for c in cells}):
            rows = [r for r in summarize([c for c in cells if c["budget"] == budget]) if r["confidence"] is None]
            epochs = [r["epochs"] for r in rows]
            for axes, key in ((storage, "storage_saved_percent"), (accuracy, "test_drop_points")):
                medians = [r[key]["median"] for r in rows]
                errors = [
                    [m - r[key]["min"] for m, r in zip(medians, rows)],
                    [r[key]["max"] - m for m, r in zip(medians, rows)],
                ]
                axes.errorbar(epochs, medians, yerr=errors, marker="o", capsize=3, label=f"budget {budget:g} points")
            accuracy.axhline(budget, linestyle="--", linewidth=1, color="grey")
        storage.set_ylim(0, 100)


def plot_precision_sets(results: Sequence[Path], path: Path) -> None:
    """Test drop against the container's bytes saved on disk, one point per run of each result (its precision set
    a marker, its budget a colour; dashed: the budgets): the size-vs-accuracy trade of each set of precisions.

    Every cell needs its ``disk`` record (``--disk RESULT.json`` adds it to cells written before)."""
    runs = [(json.loads(result.read_text()), result) for result in results]
    missing = [str(result) for written, result in runs if any("disk" not in cell for cell in written["cells"])]
    if missing:
        raise SystemExit(f"cells without a disk record in {', '.join(missing)}: run --disk on each first")
    budgets = sorted({cell["budget"] for written, _ in runs for cell in written["cells"]})
    colors = dict(zip(budgets, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    panel = (
        "container bytes saved on disk against the checkpoint, %",
        "test-split drop, points",
        "Size vs accuracy per precision set: each point one seed (dashed: the budget)",
    )
    with figure_panels(path, (7.5, 4.5), panel) as (axes,):
        for (written, _), marker in zip(runs, ("o", "s", "^", "D")):
            bits = ",".join(str(b) for b in written.get("precisions", [1]))
            for budget in budgets:
                cells = [cell for cell in written["cells"] if cell["budget"] == budget and cell["confidence"] is None]
                if cells:
                    axes.scatter(
                        [cell["disk"]["saved_percent"] for cell in cells],
                        [cell["test"]["drop_points"] for cell in cells],
                        color=colors[budget],
                        marker=marker,
                        s=50,
                        alpha=0.75,
                        label=f"precisions {bits}, budget {budget:g}",
                    )
        for budget, color in colors.items():
            axes.axhline(budget, color=color, linestyle="--", linewidth=1)


def plot_result(result: Path) -> None:
    """Draw a written result's figures again beside it (``NAME.png``, and ``NAME-epochs.png`` for an epochs sweep)."""
    cells = json.loads(result.read_text())["cells"]
    plot(cells, result.with_suffix(".png"))
    if len({c["epochs"] for c in cells}) > 1:
        plot_epochs(cells, result.with_name(f"{result.stem}-epochs.png"))


def _series(cells: list[dict[str, Any]]) -> list[tuple[tuple[float, float | None], str]]:
    keys = sorted({(c["budget"], c["confidence"]) for c in cells}, key=lambda k: (k[0], k[1] or 0.0))
    return [(key, "o" if key[1] is None else "^") for key in keys]


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """The summary as the Markdown table docs/method.md shows (median [min, max] over seeds)."""

    def spread(values: dict[str, float], digits: int, unit: str = "") -> str:
        return f"{values['median']:.{digits}f}{unit} [{values['min']:.{digits}f}, {values['max']:.{digits}f}]"

    lines = [
        "| budget | decisions judge | epochs | runs | test drop > budget | val drop > budget | storage saved, % | "
        "val drop, pts | test drop, pts | seconds | binarized |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in summary:
        judged = "measured drop" if row["confidence"] is None else f"{row['confidence']:g} upper bound"
        lines.append(
            f"| {row['budget']:g} | {judged} | {row['epochs']:g} | {row['runs']} | "
            f"{row['test_exceeds']} of {row['runs']} | {row['val_exceeds']} of {row['runs']} | "
            f"{spread(row['storage_saved_percent'], 1)} | {spread(row['val_drop_points'], 2)} | "
            f"{spread(row['test_drop_points'], 2)} | {row['seconds']['median']:.0f} | {'; '.join(row['selections'])} |"
        )
    return "\n".join(lines)


def _run_drop(record: dict[str, Any]) -> str:
    """The validation drop after ``recover``'s run: its ``finetuned`` step, or in records written before steps were
    kept, the reasons (the first layer returned records it; in model order, conv2, the worst-ranked, comes first)."""
    for step in record.get("steps", []):
        if step["action"] == "finetuned":
            return f"{step['drop_points']:+.2f}"
    for reason in record.get("decisions", {}).values():
        for marker in ("did not recover: drop ", "recovered: measured drop "):
            if reason.startswith(marker):
                return f"{float(reason[len(marker) :].split()[0]):+.2f}"
    return "-"


def cells_table(cells: list[dict[str, Any]]) -> str:
    """One Markdown row per run: what it kept, the run's and the control's drops, both splits, its cost."""
    lines = [
        "| seed | epochs | binarized | saved, % | run drop, val | control, val | val drop | test drop [95 %] | "
        "finetune epochs | seconds |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for record in sorted(cells, key=lambda r: (r["epochs"], r["seed"])):
        control = record.get("control")
        low, high = record["test"]["interval95_points"]
        layers = _layers_text(record)
        lines.append(
            f"| {record['seed']} | {record['epochs']:g} | {layers} | {record['storage_saved_percent']:.1f} | "
            f"{_run_drop(record)} | {'-' if control is None else format(control['drop_points'], '+.2f')} | "
            f"{record['val']['drop_points']:+.2f} | {record['test']['drop_points']:+.2f} [{low:+.2f}, {high:+.2f}] | "
            f"{record['finetune_epochs']:.2f} | {record['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _layers_text(record: dict[str, Any]) -> str:
    """``conv2,conv3`` for binarized layers, ``conv1:8`` for a k-bit one (records before issue 26: 1-bit only)."""
    bits = record.get("precisions") or dict.fromkeys(record["binarized"], 1)
    return ",".join(name.split(".")[-1] + ("" if k == 1 else f":{k}") for name, k in bits.items()) or "none"


def add_disk_records(result: Path) -> None:
    """Give every cell of a written result its container bytes on disk (cells written before they were measured):
    the input checkpoint's model at the cell's precisions, written as a container (its size depends on the
    precisions, not the values)."""
    written = json.loads(result.read_text())
    loaded = read_checkpoint(Path(written["checkpoint"]))
    for cell in written["cells"]:
        model = loaded.build()
        set_precision_(model, cell.get("precisions") or dict.fromkeys(cell["binarized"], 1))
        cell["disk"] = disk_record(model, written["checkpoint"])
        print(f"seed {cell['seed']} budget {cell['budget']:g}: {json.dumps(cell['disk'])}")
    atomic_write_text(result, json.dumps(written, indent=2, sort_keys=True) + "\n")


def _confidence(text: str) -> float | None:
    return None if text == "none" else float(text)


def _grid(args: argparse.Namespace) -> list[Cell]:
    return [
        (seed, budget, confidence, epochs)
        for seed in args.seeds
        for budget in args.budgets
        for confidence in args.confidences
        for epochs in args.epochs
    ]


def _run_grid(args: argparse.Namespace, cells_dir: Path) -> list[dict[str, Any]]:
    """Run the cells not yet in ``cells_dir`` (seed-major, so an early stop keeps whole seeds), then read them all."""
    cells_dir.mkdir(parents=True, exist_ok=True)
    todo = [cell for cell in _grid(args) if not (cells_dir / _cell_name(cell)).exists()]
    # spawn, not fork: a forked child of a process whose OpenMP pool is running can hang
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(
                run_cell, cell, str(args.checkpoint), args.data_root, args.threads, args.quick, tuple(args.precisions)
            ): cell
            for cell in todo
        }
        for future, cell in futures.items():
            record = future.result()
            atomic_write_text(cells_dir / _cell_name(cell), json.dumps(record, indent=1))
            print(
                f"{_cell_name(cell)}: {_layers_text(record)}  "
                f"saved {record['storage_saved_percent']:.1f} %  "
                f"val {record['val']['drop_points']:+.2f}  test {record['test']['drop_points']:+.2f}  "
                f"{record['seconds']:.0f} s",
                flush=True,
            )
    return [json.loads((cells_dir / _cell_name(cell)).read_text()) for cell in _grid(args)]


def main(argv: list[str] | None = None) -> None:
    """Run the grid's missing cells, then write ``NAME.json`` (summary and every cell) and ``NAME.png``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="model.pt (default with --quick: a freshly trained digits model)"
    )
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument(
        "--confidences", type=_confidence, nargs="+", default=[None, 0.9], help="'none' or a level, e.g. 0.9"
    )
    parser.add_argument("--epochs", type=float, nargs="+", default=[1.0], help="finetuning epochs of each run")
    parser.add_argument(
        "--precisions", type=int, nargs="+", default=[1], help="bits per weight the search may give a layer"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()), help="torch threads per worker")
    parser.add_argument(
        "--cells", type=Path, default=None, help="folder for one record per cell (default: beside the result)"
    )
    parser.add_argument("--name", default=None, help="result name (default trust, quick-trust with --quick)")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON and PNG result")
    parser.add_argument("--quick", action="store_true", help="toy size on the bundled digits")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="RESULT.json",
        help="only draw a written result's figures again and print its Markdown table",
    )
    parser.add_argument(
        "--disk",
        type=Path,
        default=None,
        metavar="RESULT.json",
        help="only add each cell's container bytes on disk to a written result (cells run before they were measured)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=None,
        metavar="RESULT.json",
        help="only draw test drop against bytes saved on disk for several results (e.g. one per precision set) into "
        "--results/--name.png",
    )
    args = parser.parse_args(argv)
    if args.compare is not None:
        plot_precision_sets(args.compare, (args.results or RESULTS) / f"{args.name or 'precision-sets'}.png")
        return
    if args.disk is not None:
        add_disk_records(args.disk)
        return
    if args.plot is not None:
        plot_result(args.plot)
        written = json.loads(args.plot.read_text())
        print(markdown_table(written["summary"]))
        print(cells_table(written["cells"]))
        return
    if args.quick:
        quick_defaults(args)
        args.seeds, args.budgets = args.seeds[:2], args.budgets[:1]
    if args.checkpoint is None:
        parser.error("--checkpoint is required without --quick")
    name = args.name or ("quick-trust" if args.quick else "trust")
    folder = args.results or RESULTS
    cells = _run_grid(args, args.cells or folder / f"{name}-cells")
    payload = {
        "checkpoint": repo_relative(str(args.checkpoint)),
        "dataset": read_checkpoint(args.checkpoint).metadata["dataset"],
        "precisions": sorted(set(args.precisions)),
        "summary": summarize(cells),
        "cells": cells,
    }
    path = write_result(name, payload, folder, module="benchmarks.bench_trust", argv=argv)
    plot_result(path)
    for row in payload["summary"]:
        print(json.dumps(row))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
