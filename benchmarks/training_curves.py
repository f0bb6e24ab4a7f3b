"""Training curves of trained checkpoints: validation accuracy per epoch, as recorded, side by side.

``albsnn-compress train`` records every epoch's mean loss and validation accuracy,
the recipe (``train_config``) and the final validation and test accuracy in the
checkpoint's metadata. This reads them back (``read_checkpoint``: no pickle is
executed) and writes them as one result with a figure, so that recipes (epochs,
augmentation, weight decay) can be compared with the paper's test accuracy
without retraining anything::

    python -m benchmarks.training_curves --name train-fmnist \\
        --checkpoints benchmarks/checkpoints/fmnist-vgg-T1.pt ../runs/e40.pt --labels "8 epochs" "40 epochs"

Writes ``benchmarks/results/NAME.json`` (each checkpoint's path, SHA-256, recipe,
accuracy and history) and ``NAME.png`` beside it.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from albsnn_compress.checkpoint import read_checkpoint
from benchmarks.machine import write_result
from benchmarks.plots import figure_panels
from benchmarks.provenance import repo_relative

__all__ = ["main", "curves", "plot"]

PAPER_TEST_PERCENT = {
    "fashion-mnist": {"arXiv": 92.92, "journal": 93.39},
    "cifar10": {"arXiv": 91.63, "journal": 92.12},
    "cifar100": {"arXiv": 63.54, "journal": 69.55},
}
"""The ALBSNN paper's test accuracy at T = 1, per dataset and version."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def curves(checkpoints: list[Path], labels: list[str]) -> list[dict[str, Any]]:
    """One record per checkpoint: its label, path, SHA-256, dataset, recipe, final accuracy and per-epoch history."""
    records = []
    for path, label in zip(checkpoints, labels, strict=True):
        metadata = read_checkpoint(path).metadata
        records.append(
            {
                "label": label,
                "checkpoint": repo_relative(str(path)),
                "sha256": _sha256(path),
                "dataset": metadata.get("dataset"),
                "train_config": metadata.get("train_config", {}),
                "accuracy": metadata.get("accuracy", {}),
                "history": metadata.get("history", []),
            }
        )
    return records


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy per epoch, one line per checkpoint (its final test accuracy in the legend).

    The paper's test rows are dashed lines.
    """
    panel = ("epoch", "validation accuracy, %", f"{records[0]['dataset']}: validation accuracy after each epoch")
    with figure_panels(path, (7.5, 4.5), panel) as (axes,):
        for record in records:
            epochs = [row["epoch"] for row in record["history"]]
            val = [row["val_accuracy"] for row in record["history"]]
            test = record["accuracy"].get("test")
            axes.plot(epochs, val, marker="o", markersize=3, label=f"{record['label']} (final test {test:.2f} %)")
        for version, percent in PAPER_TEST_PERCENT.get(records[0]["dataset"], {}).items():
            axes.axhline(percent, linestyle="--", linewidth=1, color="gray")
            axes.annotate(f"paper, {version}: {percent} % test", (0.5, percent), fontsize=7, color="gray")
        after_first = [row["val_accuracy"] for record in records for row in record["history"][1:] or record["history"]]
        axes.set_ylim(bottom=min(after_first) - 1.0)  # the first epoch's low point would flatten the rest


def print_table(records: list[dict[str, Any]]) -> None:
    """Recipe, best and final validation accuracy, and test accuracy per checkpoint."""
    table = Table(title="training runs", title_justify="left")
    for column in ("run", "epochs", "augment", "weight decay", "best val (epoch)", "final val", "test"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for record in records:
        config, history = record["train_config"], record["history"]
        best = max(history, key=lambda row: row["val_accuracy"])
        table.add_row(
            record["label"],
            f"{config.get('epochs', 0):g}",
            str(config.get("augment")),
            f"{config.get('weight_decay', 0):g}",
            f"{best['val_accuracy']:.2f} ({best['epoch']})",
            f"{record['accuracy']['val']:.2f}",
            f"{record['accuracy']['test']:.2f}",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Read the checkpoints, print the table, write ``NAME.json`` and ``NAME.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="trained model.pt files")
    parser.add_argument(
        "--labels", nargs="+", required=True, help="one name per checkpoint, for the table and the figure"
    )
    parser.add_argument("--name", default="training-curves", help="result name")
    parser.add_argument(
        "--results", type=Path, default=None, help="folder for the JSON and PNG (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    if len(args.labels) != len(args.checkpoints):
        parser.error(f"give one label per checkpoint: {len(args.checkpoints)} checkpoints, {len(args.labels)} labels")
    records = curves(args.checkpoints, args.labels)
    print_table(records)
    path = write_result(args.name, {"runs": records}, args.results, module="benchmarks.training_curves", argv=argv)
    plot(records, path.with_suffix(".png"))
    Console().print(f"wrote {path} and {path.with_suffix('.png').name}")


if __name__ == "__main__":
    main()
