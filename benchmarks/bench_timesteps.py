"""Accuracy and latency against the number of time steps T (1, 2, 4) for one preset.

The ALBSNN paper runs its networks at one time step; more steps cost latency
roughly in proportion. This trains one model per T with the same settings and
seed, and reports for each:

* validation accuracy (after the last epoch) and test accuracy, percent;
* PyTorch eager latency (``inference_mode``, the trained float model) at batch
  1 and 64, the median of many runs, and its ratio to T=1 in the same run;
* onnxruntime latency of the packed ONNX export (``export_onnx``, every
  candidate layer binarized: latency does not depend on the weight values), its
  ratio to T=1, and its ratio to PyTorch eager at the same T and batch.

Run from the repository root::

    python -m benchmarks.bench_timesteps --arch fmnist-vgg --dataset fashion-mnist \\
        --data-root ../shared/datasets --epochs 8          # hours on 2 shared cores
    python -m benchmarks.bench_timesteps --quick           # digits-small, 2 epochs (toy size)

Training runs on ``--device`` (default cpu) with torch's default thread count;
the trained model comes back to the CPU, where every latency runs with
``--threads`` intra-op threads (default 1) in both runtimes, two warm-up runs,
then at least 10 runs and ``--seconds`` of timing. The CPU may be shared: the
result records the load average before and after; compare latencies by their
ratios within one run.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from albsnn_compress.binarize import binarize_, candidate_layers
from albsnn_compress.data.registry import load_splits
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.formats.onnx.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from benchmarks.machine import add_device_argument, device_context, write_result
from benchmarks.provenance import repo_relative

__all__ = ["main", "run_benchmark", "median_ms"]

_FULL = {"arch": "fmnist-vgg", "dataset": "fashion-mnist", "epochs": 8.0, "seconds": 3.0}
_QUICK = {"arch": "digits-small", "dataset": "digits", "epochs": 2.0, "seconds": 0.1}
_MIN_RUNS = 10


def median_ms(fn: Callable[[], Any], seconds: float) -> dict[str, float]:
    """Median wall time of ``fn`` in milliseconds: two warm-up calls, then >= 10 calls and ``seconds`` in total."""
    fn()
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < _MIN_RUNS or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "runs": len(times)}


def _eager_latency(model: SpikingNet, images: torch.Tensor, threads: int, seconds: float) -> dict[str, float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return median_ms(lambda: model(images), seconds)
    finally:
        torch.set_num_threads(previous)


def _onnx_latency(path: Path, images: torch.Tensor, threads: int, seconds: float) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: images.numpy()}
    return median_ms(lambda: session.run([OUTPUT_NAME], feed), seconds)


def _packed_onnx(model: SpikingNet, folder: Path) -> Path:
    """``model`` with every candidate layer binarized, exported with 1-bit packed weights."""
    binary = copy.deepcopy(model)
    binarize_(binary, candidate_layers(binary))
    path = folder / f"T{model.timesteps}-packed.onnx"
    export_onnx(binary.eval(), path, weights="packed")
    return path


def _one_t(
    timesteps: int, config: dict[str, Any], args: argparse.Namespace, test_images: torch.Tensor, folder: Path
) -> dict[str, Any]:
    """Train at ``timesteps`` steps, then time eager and ONNX inference at every batch size."""
    Console().print(
        f"[bold]T={timesteps}[/]: training {config['arch']} on {config['dataset']} for {config['epochs']:g} epochs"
    )
    output = args.save / f"{config['arch']}-T{timesteps}.pt" if args.save else None
    trained = train_model(
        TrainRequest(
            dataset=config["dataset"],
            data_root=args.data_root,
            arch=config["arch"],
            timesteps=timesteps,
            config=TrainConfig(epochs=config["epochs"], seed=args.seed),
            output=output,
        ),
        device_context(args.device),
    )
    onnx_path = _packed_onnx(trained.model, folder)
    latency = []
    for batch in args.batches:
        images = test_images[:batch].contiguous()
        latency.append(
            {
                "batch": batch,
                "eager": _eager_latency(trained.model, images, args.threads, config["seconds"]),
                "onnx_packed": _onnx_latency(onnx_path, images, args.threads, config["seconds"]),
            }
        )
    return {
        "timesteps": timesteps,
        "val_accuracy": trained.val_accuracy,
        "test_accuracy": trained.test_accuracy,
        "train_seconds": trained.seconds,
        "onnx_bytes": onnx_path.stat().st_size,
        "checkpoint": repo_relative(str(output)) if output else None,
        "latency": latency,
    }


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each latency as a ratio to the smallest T (T=1 by default) at the same batch, and ONNX vs eager."""
    reference = {entry["batch"]: entry for entry in rows[0]["latency"]}
    for row in rows:
        for entry in row["latency"]:
            base = reference[entry["batch"]]
            for runtime in ("eager", "onnx_packed"):
                entry[runtime]["ratio_to_first_t"] = entry[runtime]["median_ms"] / base[runtime]["median_ms"]
            entry["onnx_over_eager"] = entry["onnx_packed"]["median_ms"] / entry["eager"]["median_ms"]


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Train and time every T in ``args.timesteps``; returns the JSON-able result."""
    config = dict(_QUICK if args.quick else _FULL)
    for key in ("arch", "dataset", "epochs", "seconds"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    test = load_splits(config["dataset"], args.data_root)["test"]
    test_images = test.as_float(torch.arange(max(args.batches)) % len(test))  # repeats images if a batch is larger
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_one_t(t, config, args, test_images, Path(tmp)) for t in sorted(args.timesteps)]
    _add_ratios(rows)
    return {
        "config": config
        | {"seed": args.seed, "threads": args.threads, "batches": args.batches, "train_device": args.device},
        "quick": args.quick,
        "rows": rows,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def print_tables(payload: dict[str, Any], console: Console | None = None) -> None:
    """Accuracy per T, then latency per T and batch with its ratios."""
    console = console or Console()
    config = payload["config"]
    first_t = payload["rows"][0]["timesteps"]
    accuracy = Table(
        title="accuracy vs T, percent",
        title_justify="left",
        caption=f"{config['arch']} on {config['dataset']}, {config['epochs']:g} epochs, seed {config['seed']}",
    )
    for column in ("T", "val acc", "test acc", "train s"):
        accuracy.add_column(column, justify="right")
    for row in payload["rows"]:
        accuracy.add_row(
            str(row["timesteps"]),
            f"{row['val_accuracy']:.2f}",
            f"{row['test_accuracy']:.2f}",
            f"{row['train_seconds']:.0f}",
        )
    latency = Table(
        title=f"latency vs T, median, {config['threads']} thread(s); ratios to T={first_t} at the same batch",
        title_justify="left",
    )
    for column in ("T", "batch", "eager ms", f"eager xT{first_t}", "onnx packed ms", f"onnx xT{first_t}", "onnx/eager"):
        latency.add_column(column, justify="right")
    for row in payload["rows"]:
        for entry in row["latency"]:
            eager, onnx = entry["eager"], entry["onnx_packed"]
            latency.add_row(
                str(row["timesteps"]),
                str(entry["batch"]),
                f"{eager['median_ms']:.2f}",
                f"{eager['ratio_to_first_t']:.2f}x",
                f"{onnx['median_ms']:.2f}",
                f"{onnx['ratio_to_first_t']:.2f}x",
                f"{entry['onnx_over_eager']:.2f}x",
            )
    console.print(accuracy)
    console.print(latency)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="toy size: digits-small on digits, 2 epochs, 0.1 s per latency"
    )
    parser.add_argument(
        "--arch", default=None, help="preset or JSON spec (default fmnist-vgg; digits-small with --quick)"
    )
    parser.add_argument("--dataset", default=None, help="dataset (default fashion-mnist; digits with --quick)")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset (not needed for digits)")
    parser.add_argument("--epochs", type=float, default=None, help="training epochs per T (default 8; 2 with --quick)")
    parser.add_argument(
        "--timesteps", type=_positive, nargs="+", default=[1, 2, 4], help="time steps to train and time"
    )
    parser.add_argument("--batches", type=_positive, nargs="+", default=[1, 64], help="batch sizes to time")
    parser.add_argument(
        "--seconds", type=float, default=None, help="timing seconds per latency (default 3; 0.1 with --quick)"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes while timing")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the same for every T)")
    add_device_argument(parser)
    parser.add_argument("--save", type=Path, default=None, help="also keep each trained model as DIR/<arch>-T<T>.pt")
    parser.add_argument(
        "--results", type=Path, default=None, help="folder for the JSON result (default benchmarks/results)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the tables, write ``timesteps-<dataset>-<arch>.json`` (``timesteps-quick.json``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        torch.set_num_threads(1)
    try:
        payload = run_benchmark(args)
    except AlbsnnError as exc:  # a wrong dataset, data root or architecture: one line, exit 2
        parser.exit(2, f"error: {exc}\n")
    print_tables(payload)
    config = payload["config"]
    name = "timesteps-quick" if args.quick else f"timesteps-{config['dataset']}-{Path(config['arch']).stem}"
    Console().print(
        f"wrote {write_result(name, payload, args.results, module='benchmarks.bench_timesteps', argv=argv)}"
    )


if __name__ == "__main__":
    main()
