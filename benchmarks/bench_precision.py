"""What each precision costs a trained network before any finetuning: per layer, per bit width, on both splits.

Post-training quantization with :mod:`albsnn_compress.precision`, no finetuning, no
search: for every conv/linear layer and every registered precision (1, 2, 4, 8 bits),
that layer alone at that precision; then every candidate (all layers but the first and
the last) at one precision; then every layer at 8 bits. Each row is the paired drop
against the float model on the validation and the test split (images lost and gained,
the exact 95 % interval) and the weight bits saved. It is the first measurement for
the precisions a search should try (issue 26): how much each layer can lose before a
finetune recovers anything.

    python -m benchmarks.bench_precision --checkpoint benchmarks/checkpoints/fmnist-vgg-T1-aug40.pt \\
        --data-root ../shared/datasets --name precision-fmnist-aug40
    python -m benchmarks.bench_precision --quick     # a digits model trained for it, seconds
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.binarize import candidate_layers
from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.registry import load_splits, recorded_val_share
from albsnn_compress.precision import FLOAT_BITS, PRECISIONS, layer_bits, set_precision_
from albsnn_compress.search.paired_drop import paired_drop
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training.outcomes import correct_answers
from benchmarks.bench_trust import paired_record
from benchmarks.machine import RESULTS, write_result
from benchmarks.provenance import repo_relative
from benchmarks.quick import quick_defaults

__all__ = ["settings", "measure", "markdown_table", "main"]


def settings(model: SpikingNet) -> list[tuple[str, dict[str, int]]]:
    """``(label, {layer: bits})`` per row: each layer alone at each precision, the candidates together, all at 8."""
    layers = list(layer_bits(model))
    precisions = [int(key) for key in PRECISIONS]
    rows = [(f"{name.rsplit('.', 1)[-1]} at {bits}", {name: bits}) for name in layers for bits in precisions]
    candidates = candidate_layers(model)
    rows += [(f"candidates at {bits}", dict.fromkeys(candidates, bits)) for bits in precisions]
    rows.append(("every layer at 8", dict.fromkeys(layers, 8)))
    return rows


def _saved_percent(model: SpikingNet) -> float:
    before, after = total_bits(layer_storage(model, []))  # the k-bit layers as the model has them
    return 100.0 * (1 - after / before)


def measure(model: SpikingNet, splits: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per setting: the paired drop on ``val`` and ``test`` and the weight bits saved."""
    torch.manual_seed(0)
    reference = {split: correct_answers(model, splits[split]) for split in ("val", "test")}
    layers = list(layer_bits(model))
    records = []
    for label, bits in settings(model):
        set_precision_(model, bits)
        record: dict[str, Any] = {"setting": label, "bits": dict(bits)}
        record["storage_saved_percent"] = _saved_percent(model)
        for split in ("val", "test"):
            record[split] = paired_record(paired_drop(reference[split], correct_answers(model, splits[split])))
        records.append(record)
        set_precision_(model, dict.fromkeys(layers, FLOAT_BITS))  # back to the float model's latent weights
    return records


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The rows as docs/method.md shows them."""
    lines = [
        "| setting | weight bits saved, % | val drop, pts [95 %] | test drop, pts [95 %] |",
        "| --- | ---: | --- | --- |",
    ]
    for record in records:
        cells = []
        for split in ("val", "test"):
            low, high = record[split]["interval95_points"]
            cells.append(f"{record[split]['drop_points']:+.2f} [{low:+.2f}, {high:+.2f}]")
        lines.append(f"| {record['setting']} | {record['storage_saved_percent']:.1f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure every setting on the checkpoint, write ``NAME.json`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="model.pt (--quick: a fresh digits model)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--name", default=None, help="result name (default precision, quick-precision with --quick)")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON result")
    parser.add_argument("--quick", action="store_true", help="toy size on the bundled digits")
    args = parser.parse_args(argv)
    args.cells = None
    if args.quick:
        quick_defaults(args)
    if args.checkpoint is None:
        parser.error("--checkpoint is required without --quick")
    loaded = read_checkpoint(args.checkpoint)
    root = Path(args.data_root) if args.data_root else None
    splits = load_splits(loaded.metadata["dataset"], root, val_share=recorded_val_share(loaded.metadata))
    records = measure(loaded.build(), splits)
    payload = {"checkpoint": repo_relative(str(args.checkpoint)), "rows": records}
    name = args.name or ("quick-precision" if args.quick else "precision")
    path = write_result(name, payload, args.results or RESULTS, module="benchmarks.bench_precision", argv=argv)
    print(markdown_table(records))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
