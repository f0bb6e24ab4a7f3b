"""Run every benchmark, each in its own process, and fail if any fails.

    python -m benchmarks.run_all --quick                  # toy size, into benchmarks/results/quick/
    python -m benchmarks.run_all --checkpoint runs/fmnist-vgg-T1.pt --data-root ../shared/datasets

``--quick`` runs each script's toy-size variant (seconds to a minute each) into
``benchmarks/results/quick/`` by default, so quick runs never overwrite real
results; ``make bench-quick`` and ``tests/test_benchmarks.py`` run it. Without
``--quick`` each benchmark runs at full size into ``benchmarks/results/``;
those that need a trained checkpoint (``search``, ``paper``) or a dataset folder
(``timesteps``, ``formats``: FashionMNIST) are skipped, and listed as skipped, unless
``--checkpoint`` / ``--data-root`` are given.

Each benchmark prints its own tables; a summary table and
``run_all[-quick].json`` (status, seconds and result file per benchmark) follow.
Quick runs use one intra-op thread per process (``OMP_NUM_THREADS=1`` unless
set): toy models gain nothing from more, and a shared CPU punishes spinning
threads. Exit status: 0 if every benchmark that ran succeeded and wrote its
result, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.machine import RESULTS, write_result
from benchmarks.provenance import repo_relative

__all__ = ["BENCHMARKS", "Benchmark", "main", "run_one"]

_ROOT = Path(__file__).resolve().parents[1]
QUICK_RESULTS = RESULTS / "quick"


@dataclass(frozen=True)
class Benchmark:
    """One script: its module, and its arguments and result file for a given run.

    ``arguments(args, folder)`` returns the command-line arguments, or a string
    saying why the benchmark cannot run with these options (it is then skipped).
    ``result(args)`` is the result file name the run writes into ``folder``
    (``None`` where it depends on the input). ``seeded`` scripts take ``--seed``.
    """

    name: str
    module: str
    arguments: Callable[[argparse.Namespace, Path], list[str] | str]
    result: Callable[[argparse.Namespace], str | None]
    seeded: bool = True


def _search_args(args: argparse.Namespace, folder: Path) -> list[str] | str:
    if args.quick:
        return ["--quick", "--results", str(folder)]
    if args.checkpoint is None:
        return "needs --checkpoint"
    return ["--checkpoint", str(args.checkpoint), *_root(args), "--results", str(folder)]


def _output_args(stem: str) -> Callable[[argparse.Namespace, Path], list[str]]:
    """Arguments of the scripts that take ``--output FILE`` (container, inference)."""

    def arguments(args: argparse.Namespace, folder: Path) -> list[str]:
        return (
            ["--quick", "--output", str(folder / f"{stem}-quick.json")]
            if args.quick
            else ["--output", str(folder / f"{stem}.json")]
        )

    return arguments


def _depth_args(args: argparse.Namespace, folder: Path) -> list[str]:
    return [*(["--quick"] if args.quick else []), "--results", str(folder)]


def _data_root_args(args: argparse.Namespace, folder: Path) -> list[str] | str:
    """Arguments of the scripts that need only a FashionMNIST folder at full size (timesteps, formats)."""
    if args.quick:
        return ["--quick", "--results", str(folder)]
    if args.data_root is None:
        return "needs --data-root (FashionMNIST)"
    return [*_root(args), "--results", str(folder)]


def _paper_args(args: argparse.Namespace, folder: Path) -> list[str] | str:
    if args.quick:
        return ["--quick", "--results", str(folder)]
    if args.checkpoint is None:
        return "needs --checkpoint"
    return ["--checkpoint", str(args.checkpoint), *_root(args), "--results", str(folder)]


def _root(args: argparse.Namespace) -> list[str]:
    return ["--data-root", str(args.data_root)] if args.data_root else []


def _quick_or(full: str | None, quick: str) -> Callable[[argparse.Namespace], str | None]:
    """The result file name: ``quick`` with ``--quick``, else ``full`` (``None`` when it depends on the input)."""
    return lambda args: quick if args.quick else full


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("search", "benchmarks.bench_search", _search_args, _quick_or(None, "search-quick.json")),
    Benchmark(
        "container",
        "benchmarks.bench_container",
        _output_args("container"),
        _quick_or("container.json", "container-quick.json"),
        seeded=False,
    ),
    Benchmark(
        "inference",
        "benchmarks.bench_inference",
        _output_args("inference"),
        _quick_or("inference.json", "inference-quick.json"),
        seeded=False,
    ),
    Benchmark("depth", "benchmarks.bench_depth", _depth_args, _quick_or("depth.json", "depth-quick.json")),
    Benchmark("timesteps", "benchmarks.bench_timesteps", _data_root_args, _quick_or(None, "timesteps-quick.json")),
    Benchmark("paper", "benchmarks.bench_paper", _paper_args, _quick_or(None, "paper-quick.json")),
    Benchmark(
        "formats",
        "benchmarks.bench_formats",
        _data_root_args,
        _quick_or("formats-fmnist-vgg-T1-aug40.json", "formats-quick.json"),
        seeded=False,
    ),
)


def _environment(quick: bool) -> dict[str, str]:
    env = dict(os.environ)
    if quick:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_one(benchmark: Benchmark, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run one benchmark in a subprocess (its output goes straight to ours); its status entry."""
    arguments = benchmark.arguments(args, folder)
    if isinstance(arguments, str):
        return {"name": benchmark.name, "status": "skipped", "reason": arguments, "seconds": 0.0, "result": None}
    if benchmark.seeded and args.seed is not None:
        arguments = [*arguments, "--seed", str(args.seed)]
    command = [sys.executable, "-m", benchmark.module, *arguments]
    Console().rule(f"{benchmark.name}: python -m {benchmark.module} {' '.join(arguments)}")
    start = time.perf_counter()
    code = subprocess.run(command, cwd=_ROOT, env=_environment(args.quick), check=False).returncode
    seconds = time.perf_counter() - start
    expected = benchmark.result(args)
    result = folder / expected if expected else None
    if code != 0:
        status, reason = "failed", f"exit status {code}"
    elif result is not None and not result.is_file():
        status, reason = "failed", f"exited 0 but wrote no {result}"
    else:
        status, reason = "ok", ""
    return {
        "name": benchmark.name,
        "status": status,
        "reason": reason,
        "seconds": seconds,
        "result": repo_relative(str(result)) if result else None,
        "command": shlex.join(["python", "-m", benchmark.module, *map(repo_relative, arguments)]),
    }


def print_summary(entries: list[dict[str, Any]], total: float, console: Console | None = None) -> None:
    """One row per benchmark: status, wall seconds, result file."""
    table = Table(title=f"benchmarks: {total:.0f} s in all (wall clock)", title_justify="left")
    for column in ("benchmark", "status", "seconds", "result / reason"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for entry in entries:
        style = {"ok": "green", "failed": "bold red", "skipped": "yellow"}[entry["status"]]
        table.add_row(
            entry["name"],
            f"[{style}]{entry['status']}[/]",
            f"{entry['seconds']:.1f}",
            entry["reason"] or entry["result"] or "-",
        )
    (console or Console()).print(table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="toy-size variants (what make bench-quick and the tests run)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder for every JSON result (default benchmarks/results/quick with --quick, else benchmarks/results)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=[b.name for b in BENCHMARKS], default=None, help="run only these benchmarks"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="trained model.pt for search and paper (full size only)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="dataset folder for search, timesteps and paper (full size only)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="passed to every benchmark that takes one (their default: 0)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; returns the exit status (also used by ``python -m``)."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("COLUMNS", "160")  # readable tables (ours and the children's) in a file or a pipe
    folder = (args.results or (QUICK_RESULTS if args.quick else RESULTS)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    entries = [run_one(b, args, folder) for b in BENCHMARKS if args.only is None or b.name in args.only]
    total = time.perf_counter() - start
    print_summary(entries, total)
    summary = {"quick": args.quick, "seed": args.seed, "seconds": total, "benchmarks": entries}
    path = write_result(
        "run_all-quick" if args.quick else "run_all", summary, folder, module="benchmarks.run_all", argv=argv
    )
    Console().print(f"wrote {path}")
    return 1 if any(entry["status"] == "failed" for entry in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
