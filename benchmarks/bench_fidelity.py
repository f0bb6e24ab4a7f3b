"""Estimator fidelity: does each estimator rank the layers the way their measured drops do?

For each architecture, every registered estimator (``weight``, ``output``,
``loss``, ``probe``, ...) is evaluated once on the starting model with the
search's probe batches, and the ``oracle`` strategy measures each candidate's
real drop: binarized alone, one finetuning slice, batch norm re-estimated,
validation accuracy (``measured_alone_points``). Fidelity is the Spearman rank
correlation of an estimator's raw values with those drops
(:func:`benchmarks.bench_search.fidelity_spearman`); cost is what
:func:`benchmarks.bench_search.estimator_values` records (seconds, and probe
passes: seconds over one forward pass of the probe batches).

The oracle's drops are themselves noisy (about 0.2 points standard error on
6,000 validation images), so each oracle runs with every seed in
``--oracle-seeds`` (other slice data order, other batch-norm batches): the rank
agreement of two seeds (``oracle_noise.spearman_between_seeds``) is the ceiling
an estimator's rho can be expected to reach, and each estimator is also
correlated with the per-layer mean over seeds.

Architectures (``ARCHS``): ``fmnist-vgg`` from the committed checkpoint with
its first and last layers as candidates (6), ``depth-8`` (8 candidates) and
``depth-4`` with first and last (6), both trained briefly (6 epochs) on the
FashionMNIST subset of 10,000 images that ``bench_depth`` trains on.

The ``probe`` estimator's two other measures of the same passes (KL to the
float outputs, fraction of predictions that change) are reported too, as
``probe:kl_nats`` and ``probe:prediction_flip_fraction``: whether another
measure of the same experiment would rank better.

Run from the repository root::

    python -m benchmarks.bench_fidelity --data-root ../shared/datasets --threads 1   # about 25 min
    python -m benchmarks.bench_fidelity --quick     # digits-small, toy size, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.registry import load_splits
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.estimators import ProbeEstimator
from albsnn_compress.search.session import SearchSession
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.bench_depth import finite_or_none, training_subset
from benchmarks.bench_search import estimator_values, fidelity_spearman, summarize
from benchmarks.machine import RESULTS, write_result

__all__ = ["Arch", "ARCHS", "QUICK_ARCHS", "run_benchmark", "main"]

_ROOT = Path(__file__).resolve().parents[1]
_ORACLE_BUDGET_POINTS = 100.0  # every layer fits: the oracle only measures, then verifies once (no back-off slices)


@dataclass(frozen=True)
class Arch:
    """One model to measure fidelity on: a committed checkpoint, or a preset trained here.

    Attributes:
        label: the name the tables and the JSON use.
        arch: the preset (for a trained model) or the checkpoint's architecture.
        dataset: the dataset name (``fashion-mnist``, ``digits``).
        checkpoint: a model.pt relative to the repository root; ``None`` trains ``arch``.
        first_last: whether the first and last layers are candidates too.
        train_subset: train and finetune on this many training images (``None``: all).
        train_epochs: training epochs when there is no checkpoint.
        trial_epochs: the oracle's finetuning slice per layer, in epochs of the (sub)set.
    """

    label: str
    arch: str
    dataset: str
    checkpoint: str | None = None
    first_last: bool = False
    train_subset: int | None = None
    train_epochs: float = 6.0
    trial_epochs: float = 0.25


ARCHS = (
    Arch(
        "fmnist-vgg",
        "fmnist-vgg",
        "fashion-mnist",
        checkpoint="benchmarks/checkpoints/fmnist-vgg-T1.pt",
        first_last=True,
    ),
    Arch("depth-8", "depth-8", "fashion-mnist", train_subset=10000),
    Arch("depth-4+first/last", "depth-4", "fashion-mnist", first_last=True, train_subset=10000),
)
QUICK_ARCHS = (
    Arch("digits-small+first/last", "digits-small", "digits", first_last=True, train_epochs=15.0, trial_epochs=0.1),
)
_BN_BATCHES = {"full": 20, "quick": 4}


def _model_and_splits(
    arch: Arch, data_root: str | None, seed: int
) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The starting model, its splits (training subset applied), and how it was obtained."""
    splits = load_splits(arch.dataset, data_root)
    splits["train"] = training_subset(splits["train"], arch.train_subset, seed)
    if arch.checkpoint is not None:
        return read_checkpoint(_ROOT / arch.checkpoint).build(), splits, {"checkpoint": arch.checkpoint}
    trained = train_model(
        TrainRequest(
            dataset=arch.dataset,
            arch=arch.arch,
            config=TrainConfig(epochs=arch.train_epochs, seed=seed),
            splits=splits,
        )
    )
    train = {
        "epochs": arch.train_epochs,
        "images": len(splits["train"]),
        "seconds": trained.seconds,
        "val_accuracy": trained.val_accuracy,
        "test_accuracy": trained.test_accuracy,
    }
    return trained.model, splits, {"train": train}


def _probe_details(model: torch.nn.Module, splits: dict[str, Any], config: SearchConfig) -> dict[str, dict[str, Any]]:
    """The ``probe`` estimator's other two measures (kept in its ``details``) as if they were estimators.

    They come from the same passes as its KL value, so they cost nothing more;
    their rho says whether another measure of the same experiment ranks better.
    """
    session = SearchSession(model, splits["train"], splits["val"], 0.0, config)
    estimator = ProbeEstimator()
    estimator.estimate(session.model, session.candidates, session.probe)
    measures = next(iter(estimator.details.values()))
    return {f"probe:{m}": {"values": {layer: d[m] for layer, d in estimator.details.items()}} for m in measures}


def _oracle(model: torch.nn.Module, splits: dict[str, Any], base: dict[str, Any], seed: int) -> dict[str, Any]:
    """One ``oracle`` run with ``seed``: every candidate's drop alone; no final finetune."""
    config = SearchConfig(strategy="oracle", **(base | {"seed": seed, "epochs": 0.0}))
    start = time.perf_counter()
    result = compress(model, splits["train"], splits["val"], _ORACLE_BUDGET_POINTS, config=config)
    summary = summarize(result, time.perf_counter() - start)
    summary["seed"] = seed
    summary["measured_alone_points"] = {d["name"]: d["measured_alone_points"] for d in summary["decisions"]}
    return summary


def _oracle_noise(oracles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How far two oracle seeds agree: their Spearman, and the per-layer standard deviation of one measurement.

    With two seeds, the difference of a layer's two drops has variance
    ``2 s^2``, so ``s = sd(differences) / sqrt(2)`` (points).
    """
    if len(oracles) < 2:
        return None
    first, second = (oracle["measured_alone_points"] for oracle in oracles[:2])
    names = sorted(first)
    differences = [first[n] - second[n] for n in names]
    return {
        "seeds": [oracle["seed"] for oracle in oracles[:2]],
        "spearman_between_seeds": finite_or_none(
            float(spearmanr([first[n] for n in names], [second[n] for n in names]).statistic)
        ),
        "sd_one_measurement_points": statistics.stdev(differences) / 2**0.5,
    }


def _mean_oracle(oracles: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-layer mean drop over seeds, in the shape :func:`fidelity_spearman` reads."""
    names = oracles[0]["measured_alone_points"]
    mean = {n: statistics.fmean(oracle["measured_alone_points"][n] for oracle in oracles) for n in names}
    return {"decisions": [{"name": n, "measured_alone_points": value} for n, value in mean.items()]}


def _spearman(estimates: dict[str, dict[str, Any]], oracle: dict[str, Any]) -> dict[str, float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant column; the NaN is reported as null
        return {name: finite_or_none(rho) for name, rho in fidelity_spearman(estimates, oracle).items()}


def _one_arch(arch: Arch, args: argparse.Namespace) -> dict[str, Any]:
    """Estimates, oracle runs and fidelity on one architecture: one entry of the result."""
    Console().print(f"[bold]{arch.label}[/]")
    model, splits, origin = _model_and_splits(arch, args.data_root, args.seed)
    base = {
        "trial_epochs": arch.trial_epochs,
        "bn_batches": _BN_BATCHES["quick" if args.quick else "full"],
        "binarize_first_last": arch.first_last,
        "seed": args.seed,
    }
    estimates = estimator_values(model, splits, SearchConfig(**base))
    diagnostics = _probe_details(model, splits, SearchConfig(**base))
    oracles = []
    for seed in args.oracle_seeds:
        oracles.append(_oracle(model, splits, base, seed))
        drops = ", ".join(f"{n.split('.')[-1]} {v:.2f}" for n, v in oracles[-1]["measured_alone_points"].items())
        Console().print(f"  oracle seed {seed}: {drops} ({oracles[-1]['seconds']:.0f} s)")
    return {
        "label": arch.label,
        "arch": arch.arch,
        "dataset": arch.dataset,
        "first_last": arch.first_last,
        "train_subset": arch.train_subset,
        "val_images": len(splits["val"]),
        **origin,
        "settings": base,
        "candidates": len(oracles[0]["measured_alone_points"]),
        "estimates": estimates,
        "oracles": [
            {
                key: oracle[key]
                for key in ("seed", "measured_alone_points", "seconds", "finetune_epochs", "slices", "timings")
            }
            for oracle in oracles
        ],
        "fidelity_spearman": _spearman(estimates, oracles[0]),
        "fidelity_spearman_vs_mean_oracle": _spearman(estimates, _mean_oracle(oracles)),
        "oracle_noise": _oracle_noise(oracles),
        "probe_measures": diagnostics,
        "probe_measures_spearman": _spearman(diagnostics, oracles[0]),
        "probe_measures_spearman_vs_mean_oracle": _spearman(diagnostics, _mean_oracle(oracles)),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every architecture of ``QUICK_ARCHS`` or ``ARCHS``; returns the JSON-able result."""
    load_before = os.getloadavg()
    archs = QUICK_ARCHS if args.quick else ARCHS
    results = [_one_arch(arch, args) for arch in archs if not args.archs or arch.label in args.archs]
    return {
        "quick": args.quick,
        "seed": args.seed,
        "oracle_seeds": args.oracle_seeds,
        "archs": results,
        "threads": torch.get_num_threads(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def markdown_table(payload: dict[str, Any]) -> str:
    """Estimator x architecture: rho against oracle seed 0 (and the seed mean), cost; then the oracle's own noise."""
    archs = payload["archs"]
    header = (
        "| estimator | "
        + " | ".join(f"{a['label']} ({a['candidates']}): rho (vs mean), s, passes" for a in archs)
        + " |"
    )
    lines = [header, "| --- |" + " ---: |" * len(archs)]
    for name in archs[0]["estimates"]:
        cells = []
        for a in archs:
            cost = a["estimates"][name]
            cells.append(
                f"{_rho(a['fidelity_spearman'][name])} ({_rho(a['fidelity_spearman_vs_mean_oracle'][name])}), "
                f"{cost['seconds']:.2f}, {cost['probe_passes']:.1f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name in archs[0]["probe_measures"]:
        cells = [
            f"{_rho(a['probe_measures_spearman'][name])} "
            f"({_rho(a['probe_measures_spearman_vs_mean_oracle'][name])}), as probe"
            for a in archs
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    noise = [a["oracle_noise"] for a in archs]
    lines.append(
        "| oracle seed vs seed | "
        + " | ".join(
            "-" if n is None else f"{_rho(n['spearman_between_seeds'])}, sd {n['sd_one_measurement_points']:.2f} pts"
            for n in noise
        )
        + " |"
    )
    lines.append(
        "| oracle cost (s per seed) | " + " | ".join(f"{a['oracles'][0]['seconds']:.0f}" for a in archs) + " |"
    )
    return "\n".join(lines)


def print_tables(payload: dict[str, Any], console: Console | None = None) -> None:
    """Per architecture: each estimator's values next to the oracle's drops, then rho and cost."""
    console = console or Console()
    for entry in payload["archs"]:
        table = Table(title=f"{entry['label']}: raw estimates and oracle drops (points)", title_justify="left")
        names = list(entry["oracles"][0]["measured_alone_points"])
        table.add_column("layer")
        for estimator in entry["estimates"]:
            table.add_column(estimator, justify="right")
        for oracle in entry["oracles"]:
            table.add_column(f"oracle s{oracle['seed']}", justify="right")
        for layer in names:
            table.add_row(
                layer.split(".")[-1],
                *(f"{e['values'][layer]:.4g}" for e in entry["estimates"].values()),
                *(f"{o['measured_alone_points'][layer]:.2f}" for o in entry["oracles"]),
            )
        console.print(table)
    console.print(markdown_table(payload))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="toy size: digits-small with first/last, 15 training epochs, 1 thread"
    )
    parser.add_argument("--data-root", default=None, help="folder holding FashionMNIST (not needed for --quick)")
    parser.add_argument("--archs", nargs="+", default=None, help="only these labels of ARCHS (default: all)")
    parser.add_argument(
        "--oracle-seeds", type=int, nargs="+", default=[0, 1], help="one oracle run per seed (two give its noise)"
    )
    parser.add_argument("--seed", type=int, default=0, help="training, subset and probe seed")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's; 1 with --quick)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder for the JSON result (default benchmarks/results, or its quick/ with --quick)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the tables, write ``fidelity[-quick].json``."""
    args = _parser().parse_args(argv)
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    payload = run_benchmark(args)
    print_tables(payload)
    folder = args.results or (RESULTS / "quick" if args.quick else None)  # quick runs never overwrite the real result
    path = write_result(
        "fidelity-quick" if args.quick else "fidelity", payload, folder, module="benchmarks.bench_fidelity", argv=argv
    )
    Console().print(f"wrote {path}")


if __name__ == "__main__":
    main()
