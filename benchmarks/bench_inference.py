"""Inference cost of the ONNX exports vs PyTorch eager: latency, load time, file size, peak memory.

Run from the repository root::

    python -m benchmarks.bench_inference            # fmnist-vgg, batch 1 and 64, T = 1 and 4 (a few minutes)
    python -m benchmarks.bench_inference --quick    # toy size, seconds

The model is the ``fmnist-vgg`` preset with every candidate layer binarized, or with
``--bits 2|4|8`` stored at that many bits (the packed ONNX then holds k-bit codes unpacked by
bit operators; random weights: dense kernels cost the same whatever the values). Variants:

* ``pytorch``: eager PyTorch (``inference_mode``), model loaded from a checkpoint;
* ``ort-float``: onnxruntime, float ONNX, all graph optimizations;
* ``ort-packed``: onnxruntime, packed ONNX, all optimizations (constant folding
  unpacks the weights into float initializers when the session loads);
* ``ort-packed-nofold``: packed ONNX, all optimizations but ``ConstantFolding``
  (the weights stay packed in memory and are unpacked at every run);
* ``ort-packed-noopt``: packed ONNX with ``ORT_DISABLE_ALL``.

Each (variant, batch, T) runs in a fresh subprocess so that its peak resident
memory is its own: the reported memory is the peak minus the process's size
after imports and input creation (so it holds the weights, the runtime's
buffers and activations; ``VmHWM`` after a ``clear_refs`` reset on Linux,
``ru_maxrss`` elsewhere). ONNX workers never import torch. Latency is
the median over repeated runs after two warm-up runs; every variant is measured
in several interleaved rounds (a fresh process each) and every number is the
median over the rounds; the ratio is against PyTorch eager at the same batch
and T in the same invocation. The CPU may be shared with other jobs: results
record the load average before and after, and each round's median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run_benchmark", "VARIANTS"]

VARIANTS = ("pytorch", "ort-float", "ort-packed", "ort-packed-nofold", "ort-packed-noopt")
_FULL = {
    "arch": "fmnist-vgg",
    "dataset": "fashion-mnist",
    "batches": [1, 64],
    "timesteps": [1, 4],
    "seconds": 2.0,
    "repeats": 3,
}
_QUICK = {"arch": "digits-small", "dataset": "digits", "batches": [1], "timesteps": [1], "seconds": 0.2, "repeats": 1}


def _status_kib(field: str) -> int | None:
    """A ``Vm*`` field of ``/proc/self/status`` in KiB, or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB.

    ``VmHWM`` where there is one: ``ru_maxrss`` also counts the parent's size at
    ``fork`` (the kernel keeps the larger of the two), which would hide the
    worker's own peak.
    """
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> int:
    """Restart the peak-RSS count at the current RSS (Linux ``clear_refs``); returns the new baseline in KiB.

    Imports allocate and free a lot, so without the reset the peak could still be
    the import's and the delta would read zero. Where the reset is unavailable the
    old peak is the baseline (deltas then under-report).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _peak_rss_kib()


def _torch_runner(job: dict[str, Any], images: np.ndarray) -> Any:
    import torch  # only in the PyTorch worker, so ONNX workers' memory holds no torch

    from albsnn_compress.checkpoint import load_checkpoint

    torch.set_num_threads(job["threads"])
    batch = torch.from_numpy(images)
    base = _reset_peak_rss()
    start = time.perf_counter()
    model = load_checkpoint(job["file"])
    load = time.perf_counter() - start

    def run() -> None:
        with torch.inference_mode():
            model(batch)

    return base, load, run


def _onnx_runner(job: dict[str, Any], images: np.ndarray) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = job["threads"]
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    extra: dict[str, Any] = {}
    if job["variant"] == "ort-packed-noopt":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if job["variant"] == "ort-packed-nofold":
        extra["disabled_optimizers"] = ["ConstantFolding"]
    base = _reset_peak_rss()
    start = time.perf_counter()
    session = ort.InferenceSession(job["file"], options, providers=["CPUExecutionProvider"], **extra)
    load = time.perf_counter() - start
    feed = {"images": images}
    return base, load, lambda: session.run(["logits"], feed)


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one (variant, batch, T) in this process; returns the numbers."""
    images = np.random.default_rng(0).random((job["batch"], *job["shape"]), dtype=np.float32)
    runner = _torch_runner if job["variant"] == "pytorch" else _onnx_runner
    base, load, run = runner(job, images)
    after_load = _peak_rss_kib()
    run()
    run()
    times: list[float] = []
    deadline = time.perf_counter() + job["seconds"]
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 1000):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "runs": len(times),
        "load_ms": 1e3 * load,
        "load_rss_mib": (after_load - base) / 1024,
        "peak_rss_mib": (_peak_rss_kib() - base) / 1024,
    }


def _spawn(job: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_worker` in a fresh interpreter and return its JSON answer."""
    command = [sys.executable, "-m", "benchmarks.bench_inference", "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"worker {job['variant']} batch {job['batch']} T={job['timesteps']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_models(config: dict[str, Any], folder: Path, timesteps: int) -> dict[str, Path]:
    """The checkpoint and both ONNX files of the benchmark model with ``timesteps`` steps."""
    import torch

    from albsnn_compress.binarize import candidate_layers
    from albsnn_compress.checkpoint import save_checkpoint
    from albsnn_compress.formats.onnx.export import export_onnx
    from albsnn_compress.precision import set_precision_
    from albsnn_compress.snn.spec import SpikingNet
    from albsnn_compress.training.train_model import resolve_architecture

    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture(config["arch"], config["dataset"]), timesteps)
    set_precision_(model, dict.fromkeys(candidate_layers(model), config.get("bits", 1))).eval()
    files = {
        "pytorch": folder / f"model-T{timesteps}.pt",
        "ort-float": folder / f"model-T{timesteps}-float.onnx",
        "ort-packed": folder / f"model-T{timesteps}-packed.onnx",
    }
    save_checkpoint(files["pytorch"], model)
    export_onnx(model, files["ort-float"], weights="float")
    export_onnx(model, files["ort-packed"])
    return files


def _measure(
    variant: str, file: Path, batch: int, timesteps: int, shape: list[int], config: dict[str, Any]
) -> dict[str, Any]:
    job = {
        "variant": variant,
        "file": str(file),
        "batch": batch,
        "timesteps": timesteps,
        "shape": shape,
        "threads": config["threads"],
        "seconds": config["seconds"],
    }
    return _spawn(job)


def _summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over rounds of every number, plus each round's median latency and the best of them."""
    keys = [key for key in rounds[0] if key != "runs"]
    summary: dict[str, Any] = {key: statistics.median(r[key] for r in rounds) for key in keys}
    summary["runs"] = sum(r["runs"] for r in rounds)
    summary["round_median_ms"] = [r["median_ms"] for r in rounds]
    summary["best_median_ms"] = min(summary["round_median_ms"])  # the round least disturbed by other jobs
    return summary


def run_benchmark(config: dict[str, Any]) -> dict[str, Any]:
    """Every variant at every batch size and T, ``config['repeats']`` interleaved rounds each."""
    from albsnn_compress.data.registry import dataset_info

    shape = list(dataset_info(config["dataset"]).input_shape)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for timesteps in config["timesteps"]:
            files = _write_models(config, Path(tmp), timesteps)
            for batch in config["batches"]:
                rounds: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
                for _ in range(config["repeats"]):  # interleaved, so a burst of load hits every variant alike
                    for variant in VARIANTS:
                        file = files.get(variant, files["ort-packed"])
                        rounds[variant].append(_measure(variant, file, batch, timesteps, shape, config))
                reference = statistics.median(r["median_ms"] for r in rounds["pytorch"])
                for variant in VARIANTS:
                    file = files.get(variant, files["ort-packed"])
                    row = {
                        "variant": variant,
                        "batch": batch,
                        "timesteps": timesteps,
                        "file_bytes": file.stat().st_size,
                        **_summarize(rounds[variant]),
                    }
                    row["ratio_vs_pytorch"] = row["median_ms"] / reference
                    rows.append(row)
    return {"config": {**config, "variants": list(VARIANTS)}, "rows": rows}


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    config = result["config"]
    table = Table(
        title=f"{config['arch']} inference, {config['threads']} thread(s), {config['repeats']} round(s)",
        caption="ms: median latency (median over rounds); best: the best round's median; xPT: ms vs PyTorch "
        "eager; load: session/model load; RSS: peak RSS delta",
    )
    for column in ("variant", "batch", "T", "ms", "best", "xPT", "load ms", "file KiB", "RSS MiB"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    for row in result["rows"]:
        table.add_row(
            row["variant"],
            str(row["batch"]),
            str(row["timesteps"]),
            f"{row['median_ms']:.2f}",
            f"{row['best_median_ms']:.2f}",
            f"{row['ratio_vs_pytorch']:.2f}x",
            f"{row['load_ms']:.1f}",
            f"{row['file_bytes'] / 1024:.1f}",
            f"{row['peak_rss_mib']:.1f}",
        )
    console = Console()
    if not console.is_terminal:  # piped into a log: don't squeeze the columns to 80 characters
        console.width = 110
    console.print(table)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the benchmark (or one worker), write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy-size run (digits-small, batch 1, T=1) in seconds")
    parser.add_argument("--arch", help="another FashionMNIST preset instead of fmnist-vgg (e.g. fmnist-wide)")
    parser.add_argument("--batches", type=_int_list, help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--timesteps", type=_int_list, help="comma-separated time steps (default 1,4)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime (default 1)")
    parser.add_argument(
        "--bits", type=int, default=1, choices=(1, 2, 4, 8), help="bits per weight of every candidate layer (default 1)"
    )
    parser.add_argument("--repeats", type=int, help="interleaved rounds per variant, a fresh process each (default 3)")
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/inference[-quick].json)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    from benchmarks.machine import RESULTS, write_result

    config = dict(_QUICK if args.quick else _FULL)
    for key in ("arch", "batches", "timesteps", "repeats"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config["threads"] = args.threads
    config["bits"] = args.bits
    load_before = os.getloadavg()
    result = run_benchmark(config)
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    output = args.output or RESULTS / ("inference-quick.json" if args.quick else "inference.json")
    path = write_result(output.stem, result, output.parent, module="benchmarks.bench_inference", argv=argv)
    _print_table(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
