"""Search cost and quality, and estimator fidelity, on one trained checkpoint.

For each budget: ``adaptive`` (with each requested estimator), ``oracle`` and
``all`` on the same model; wall time, finetuning epochs, layers binarized,
storage saved (computed bits), validation/test accuracy before and after. Then
each estimator's fidelity: the Spearman rank correlation between its per-layer
values on the input model and the per-layer drops ``oracle`` measured.

    python -m benchmarks.bench_search --checkpoint runs/fmnist-vgg-T1.pt \\
        --data-root ../shared/datasets --budgets 0.2 1.0 --name fmnist
    python -m benchmarks.bench_search --quick     # digits, toy size, seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.registry import load_splits
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.estimators import ESTIMATORS, resolve_estimator
from albsnn_compress.search.session import SearchSession
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.machine import add_device_argument, device_context, write_result
from benchmarks.provenance import repo_relative


def summarize(result, seconds: float) -> dict[str, Any]:
    """The JSON-able record of one compression run."""
    before, after = total_bits(layer_storage(result.model, result.binarized))
    return {
        "strategy": result.strategy,
        "estimator": result.estimator,
        "budget": result.budget,
        "selected": result.binarized,
        "accuracy": result.accuracy,
        "val_drop": result.val_drop,
        "bits_before": before,
        "bits_after": after,
        "storage_saved_percent": 100.0 * (1 - after / before),
        "finetune_epochs": result.finetune_epochs,
        "slices": result.finetune_slices,
        "seconds": seconds,
        "timings": result.timings,
        "decisions": [asdict(d) for d in result.decisions],
        "trajectory": [asdict(s) for s in result.trajectory],  # a step's paired counts become a plain dict
    }


def _probe_pass_seconds(model, probe) -> float:
    """Seconds of one no-grad forward pass over the probe batches (after a warm-up pass)."""
    model.eval()
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            for images, _labels in probe.batches:
                model(images)
    return time.perf_counter() - start


def estimator_values(model, splits, config: SearchConfig, ctx: DistContext = LOCAL) -> dict[str, dict[str, Any]]:
    """Each estimator's raw per-layer values on the input model, and what they cost.

    Cost is in seconds and in probe passes (seconds / one forward pass over the
    probe batches, timed in the same run), which carries across machines.
    """
    session = SearchSession(model, splits["train"], splits["val"], 0.0, config, ctx)
    pass_seconds = _probe_pass_seconds(session.model, session.probe)
    out = {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        values = resolve_estimator(name).estimate(session.model, session.candidates, session.probe)
        seconds = time.perf_counter() - start
        out[name] = {"values": values, "seconds": seconds, "probe_passes": seconds / pass_seconds}
    return out


def fidelity_spearman(estimates: dict[str, dict[str, Any]], oracle: dict[str, Any]) -> dict[str, float]:
    """Spearman rank correlation of each estimator's values with oracle's measured drops."""
    measured = {d["name"]: d["measured_alone_points"] for d in oracle["decisions"]}
    names = sorted(measured)
    fidelity = {}
    for estimator, entry in estimates.items():
        rho = spearmanr([entry["values"][n] for n in names], [measured[n] for n in names]).statistic
        fidelity[estimator] = float(rho)
    return fidelity


def _run_one(
    model, splits, strategy: str, estimator: str, budget: float, base: dict[str, Any], ctx: DistContext
) -> dict[str, Any]:
    start = time.perf_counter()
    result = compress(
        model,
        splits["train"],
        splits["val"],
        budget,
        test_data=splits["test"],
        config=SearchConfig(strategy=strategy, estimator=estimator, **base),
        ctx=ctx,
    )
    Console().print(f"{strategy}/{estimator} budget {budget}: {result.binarized} drop {result.val_drop:.2f}")
    return summarize(result, time.perf_counter() - start)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Oracle first (its drops are the truth for fidelity), then adaptive, then all."""
    checkpoint_path = Path(args.checkpoint)
    checkpoint = read_checkpoint(checkpoint_path)
    splits = load_splits(checkpoint.metadata["dataset"], args.data_root)
    model = checkpoint.build()
    base = {"epochs": args.epochs, "trial_epochs": args.trial_epochs, "seed": args.seed, "distill": not args.no_distill}
    base["precisions"] = (1,)  # the binary-or-float search each strategy runs
    ctx = device_context(args.device)
    estimates = estimator_values(model, splits, SearchConfig(**base), ctx)
    runs: list[dict[str, Any]] = []
    fidelity: dict[str, float] = {}
    if "oracle" in args.strategies:
        runs += [_run_one(model, splits, "oracle", "weight", budget, base, ctx) for budget in args.budgets]
        fidelity = fidelity_spearman(estimates, runs[0])
    estimators = args.estimators
    if estimators == ["best"]:
        if not fidelity:
            raise SystemExit("--estimators best needs --strategies oracle (fidelity decides the best)")
        estimators = [max(fidelity, key=fidelity.get)]
    if "adaptive" in args.strategies:
        runs += [_run_one(model, splits, "adaptive", e, b, base, ctx) for b in args.budgets for e in estimators]
    if "all" in args.strategies:
        runs.append(_run_one(model, splits, "all", "weight", args.budgets[0], base, ctx))  # the same for every budget
    return {
        "checkpoint": repo_relative(str(checkpoint_path)),
        "dataset": checkpoint.metadata["dataset"],
        "arch": checkpoint.spec["name"],
        "timesteps": checkpoint.timesteps,
        "settings": base,
        "device": str(ctx.device),
        "estimates": estimates,
        "fidelity_spearman": fidelity,
        "runs": runs,
    }


def print_tables(payload: dict[str, Any]) -> None:
    table = Table(
        title=f"search on {payload['dataset']} {payload['arch']} T={payload['timesteps']} (val = validation split)"
    )
    for column in (
        "strategy",
        "estimator",
        "budget",
        "binarized",
        "val before",
        "val after",
        "drop",
        "test after",
        "saved %",
        "ft epochs",
        "seconds",
    ):
        table.add_column(column)
    for r in payload["runs"]:
        acc = r["accuracy"]
        table.add_row(
            r["strategy"],
            r["estimator"] if r["strategy"] == "adaptive" else "-",
            f"{r['budget']:.1f}",
            ",".join(n.split(".")[-1] for n in r["selected"]) or "-",
            f"{acc['val_before']:.2f}",
            f"{acc['val_after']:.2f}",
            f"{r['val_drop']:.2f}",
            f"{acc.get('test_after', float('nan')):.2f}",
            f"{r['storage_saved_percent']:.1f}",
            f"{r['finetune_epochs']:.2f}",
            f"{r['seconds']:.0f}",
        )
    console = Console()
    console.print(table)
    if payload["fidelity_spearman"]:
        console.print(
            "Spearman(estimate, oracle drop): "
            + ", ".join(f"{k} {v:+.2f}" for k, v in payload["fidelity_spearman"].items())
        )


def markdown_tables(payload: dict[str, Any]) -> str:
    """The runs and the fidelity as Markdown tables (what docs/method.md shows)."""
    lines = [
        "| strategy | estimator | budget (pts) | binarized | val before | val after | val drop "
        "| test before | test after | storage before (B) | storage after (B) | saved % "
        "| finetune epochs | slices | wall s |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in payload["runs"]:
        acc = r["accuracy"]
        lines.append(
            f"| {r['strategy']} | {r['estimator'] if r['strategy'] == 'adaptive' else '-'} | {r['budget']:.1f} | "
            f"{', '.join(n.split('.')[-1] for n in r['selected']) or '-'} | "
            f"{acc['val_before']:.2f} | {acc['val_after']:.2f} | {r['val_drop']:.2f} | "
            f"{acc.get('test_before', float('nan')):.2f} | {acc.get('test_after', float('nan')):.2f} | "
            f"{r['bits_before'] // 8:,} | {r['bits_after'] // 8:,} | {r['storage_saved_percent']:.1f} | "
            f"{r['finetune_epochs']:.2f} | {r.get('slices', '-')} | {r['seconds']:.0f} |"
        )
    if payload["fidelity_spearman"]:
        lines += [
            "",
            "| estimator | Spearman with oracle's measured drops | estimate cost (s) | cost in probe passes |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, rho in payload["fidelity_spearman"].items():
            cost = payload["estimates"][name]
            passes = f"{cost['probe_passes']:.1f}" if "probe_passes" in cost else "-"
            lines.append(f"| {name} | {rho:+.2f} | {cost['seconds']:.2f} | {passes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the tables, write ``search-NAME.json`` (or print ``--markdown`` tables)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", help="model.pt to compress (default with --quick: a freshly trained digits model)"
    )
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument("--strategies", nargs="+", default=["adaptive", "oracle", "all"])
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["weight"],
        help="estimators for adaptive; 'best' = the one whose ranking best matches oracle's measured drops",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--trial-epochs", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--no-distill", action="store_true", help="finetune on labels only (the distillation ablation)")
    parser.add_argument("--name", default=None, help="result name (benchmarks/results/search-NAME.json)")
    parser.add_argument("--quick", action="store_true", help="toy size on the bundled digits")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON result")
    parser.add_argument(
        "--markdown", type=Path, default=None, help="print an existing result JSON as Markdown tables and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_tables(json.loads(args.markdown.read_text())))
        return
    if args.quick:
        tmp = Path(tempfile.mkdtemp())
        if not args.checkpoint:
            args.checkpoint = str(tmp / "digits.pt")
            train_model(TrainRequest(config=TrainConfig(epochs=5), output=Path(args.checkpoint)))
        args.budgets, args.epochs, args.trial_epochs = args.budgets[:1], 0.2, 0.2
        args.name = args.name or "quick"
    payload = run(args)
    print_tables(payload)
    path = write_result(
        f"search-{args.name or payload['dataset']}", payload, args.results, module="benchmarks.bench_search", argv=argv
    )
    Console().print(f"wrote {path}")


if __name__ == "__main__":
    main()
