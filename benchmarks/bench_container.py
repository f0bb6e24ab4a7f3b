"""The ``.albsnn`` container against a ``model.pt`` checkpoint: bytes, write/read time, bit-packing throughput.

Run from the repository root::

    python -m benchmarks.bench_container            # fmnist-vgg; bit packing from 1K to 64M weights (about a minute)
    python -m benchmarks.bench_container --quick    # bit packing up to 1M weights, fewer repeats (seconds)

The model is the ``fmnist-vgg`` preset (FashionMNIST shapes) with random
weights and every candidate layer binarized (sizes and times do not depend on
the values). Measured:

* bytes: the fp32 checkpoint of the unbinarized model (``save_checkpoint``) vs
  the container of the binarized one (float32 and float16 for the float tensors),
  plus a container with nothing binarized (the format's own overhead);
* time: ``write_container`` vs ``save_checkpoint`` of the same binarized model,
  and ``read_container`` (validates and builds the model) vs ``read_checkpoint``
  (validates) and ``load_checkpoint`` (validates and builds), as the median of
  several runs, reported as container/checkpoint ratios;
* bit packing: ``pack_signs`` and ``unpack_signs`` of ``albsnn_compress/formats/bitpack.py``
  against the bare numpy calls that give the same bytes and the same ``+1/-1``
  float32 tensor (``np.packbits(w >= 0).tobytes()``; ``np.unpackbits``, then
  ``* 2 - 1`` in float32 and ``torch.from_numpy``), on the same float32 arrays:
  GB/s of float32 weights (4 bytes per weight) going in (pack) or coming out
  (unpack), and bitpack's speed as a ratio to numpy's (above 1: faster): the
  two are timed in turn, sample after sample, and the ratio is the median of
  the ratios of neighbouring samples, so a burst of load hits both sides alike.

Times are wall-clock medians with one torch thread (``--threads``) on a CPU
that may be shared with other jobs: the result records the load average before
and after.
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

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from albsnn_compress.binarize import binarize_, candidate_layers
from albsnn_compress.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.formats.bitpack import pack_signs, unpack_signs
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture

__all__ = ["main", "run_benchmark"]

_FULL = {"io_runs": 15, "pack_sizes": [1 << k for k in range(10, 27, 2)], "min_seconds": 1.0}
_QUICK = {"io_runs": 5, "pack_sizes": [1 << k for k in range(10, 21, 2)], "min_seconds": 0.1}


def _median_seconds(fn: Callable[[], Any], runs: int, min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn`` over at least ``runs`` calls and ``min_seconds`` in total (one warm-up call)."""
    fn()
    times: list[float] = []
    while len(times) < runs or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _models() -> tuple[SpikingNet, SpikingNet]:
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("fmnist-vgg", "fashion-mnist")).eval()
    binary = copy.deepcopy(model)
    binarize_(binary, candidate_layers(binary))
    return model, binary


def _sizes(folder: Path, model: SpikingNet, binary: SpikingNet) -> list[dict[str, Any]]:
    files = {
        "checkpoint fp32 (model.pt, unbinarized)": lambda p: save_checkpoint(p, model),
        "container, nothing binarized": lambda p: write_container(p, model),
        "container, binarized, float32": lambda p: write_container(p, binary),
        "container, binarized, float16": lambda p: write_container(p, binary, float_kind="float16"),
    }
    rows = []
    for index, (label, write) in enumerate(files.items()):
        path = folder / f"size{index}"
        write(path)
        rows.append({"file": label, "bytes": path.stat().st_size})
    reference = rows[0]["bytes"]
    for row in rows:
        row["ratio_to_checkpoint"] = row["bytes"] / reference
    return rows


def _io_times(folder: Path, binary: SpikingNet, runs: int) -> list[dict[str, Any]]:
    container, checkpoint = folder / "m.albsnn", folder / "m.pt"
    write_s = _median_seconds(lambda: write_container(container, binary), runs)
    save_s = _median_seconds(lambda: save_checkpoint(checkpoint, binary), runs)
    read_s = _median_seconds(lambda: read_container(container), runs)
    read_ckpt_s = _median_seconds(lambda: read_checkpoint(checkpoint), runs)
    load_ckpt_s = _median_seconds(lambda: load_checkpoint(checkpoint), runs)
    return [
        {"operation": "write (write_container vs save_checkpoint)", "container_s": write_s, "checkpoint_s": save_s},
        {"operation": "read (read_container vs read_checkpoint)", "container_s": read_s, "checkpoint_s": read_ckpt_s},
        {
            "operation": "read + build (read_container vs load_checkpoint)",
            "container_s": read_s,
            "checkpoint_s": load_ckpt_s,
        },
    ]


def _numpy_pack(weights: np.ndarray) -> bytes:
    return np.packbits(weights >= 0).tobytes()


def _numpy_unpack(data: bytes, count: int) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count)
    return torch.from_numpy(bits.astype(np.float32) * 2.0 - 1.0)


def _calls_per_sample(fn: Callable[[], Any], sample_seconds: float = 2e-3) -> int:
    """Back-to-back calls of ``fn`` that last about ``sample_seconds`` (after one warm-up call)."""
    fn()
    start = time.perf_counter()
    fn()
    return max(1, round(sample_seconds / max(time.perf_counter() - start, 1e-9)))


def _interleaved_samples(fns: dict[str, Callable[[], Any]], runs: int, min_seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each function, sampled in turn: at least ``runs`` samples and ``min_seconds`` each.

    Sample ``i`` of every function is taken back to back, so a burst of load from
    other jobs hits all of them alike. A sample times enough back-to-back calls to
    last about 2 ms, so the timer's resolution and the loop add little even to a
    1-microsecond call.
    """
    calls = {name: _calls_per_sample(fn) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    while min(map(len, samples.values())) < runs or min(spent.values()) < min_seconds:
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed / calls[name])
            spent[name] += elapsed
    return samples


def _throughput_row(operation: str, count: int, samples: dict[str, list[float]]) -> dict[str, float]:
    """GB/s of float32 weights (median sample) of bitpack and numpy, and the median of their paired speed ratios."""
    row = {
        f"{operation}_{name}_gbps": 4 * count / statistics.median(samples[name]) / 1e9 for name in ("bitpack", "numpy")
    }
    row[f"{operation}_ratio_to_numpy"] = statistics.median(n / b for n, b in zip(samples["numpy"], samples["bitpack"]))
    return row


def _bitpack(sizes: list[int], min_seconds: float) -> list[dict[str, Any]]:
    """Pack and unpack throughput of ``albsnn_compress/formats/bitpack.py`` and of bare numpy, per size.

    Each row also holds the median ratio of the two.
    """
    rows = []
    for count in sizes:
        weights = np.random.default_rng(count).standard_normal(count, dtype=np.float32)
        packed = pack_signs(weights)
        if packed != _numpy_pack(weights) or not torch.equal(
            unpack_signs(packed, [count]), _numpy_unpack(packed, count)
        ):
            raise RuntimeError(f"bitpack and numpy disagree at {count} weights")
        runs = 5 if count >= 1 << 24 else 9
        # Default arguments bind this iteration's arrays: each timed call is one lambda calling one function, as before.
        pack = {
            "bitpack": lambda weights=weights: pack_signs(weights),
            "numpy": lambda weights=weights: _numpy_pack(weights),
        }
        unpack = {
            "bitpack": lambda packed=packed, count=count: unpack_signs(packed, [count]),
            "numpy": lambda packed=packed, count=count: _numpy_unpack(packed, count),
        }
        rows.append(
            {
                "weights": count,
                **_throughput_row("pack", count, _interleaved_samples(pack, runs, min_seconds)),
                **_throughput_row("unpack", count, _interleaved_samples(unpack, runs, min_seconds)),
            }
        )
    return rows


def run_benchmark(config: dict[str, Any]) -> dict[str, Any]:
    """Measure sizes, I/O times and bit-packing throughput; return the JSON-able result."""
    model, binary = _models()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = _sizes(Path(tmp), model, binary)
        io = _io_times(Path(tmp), binary, config["io_runs"])
    for row in io:
        row["ratio"] = row["container_s"] / row["checkpoint_s"]
    return {
        "model": {
            "arch": "fmnist-vgg",
            "dataset": "fashion-mnist",
            "binarized": candidate_layers(model),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "config": config,
        "sizes": sizes,
        "io": io,
        "bitpack": _bitpack(config["pack_sizes"], config["min_seconds"]),
    }


def _weights_label(count: int) -> str:
    return f"{count >> 20}M" if count >= 1 << 20 else f"{count >> 10}K"


def print_tables(result: dict[str, Any], console: Console | None = None) -> None:
    """The three result tables: bytes, I/O time, bit-packing throughput."""
    console = console or Console()
    sizes = Table(title=f"bytes on disk, fmnist-vgg ({result['model']['parameters']} parameters)", title_justify="left")
    for column in ("file", "bytes", "vs checkpoint"):
        sizes.add_column(column, justify="left" if column == "file" else "right")
    for row in result["sizes"]:
        sizes.add_row(row["file"], f"{row['bytes']:,}", f"{row['ratio_to_checkpoint']:.3f}x")
    io = Table(title="time, median (binarized model)", title_justify="left")
    for column in ("operation", "container ms", "checkpoint ms", "ratio"):
        io.add_column(column, justify="left" if column == "operation" else "right")
    for row in result["io"]:
        io.add_row(
            row["operation"],
            f"{1e3 * row['container_s']:.2f}",
            f"{1e3 * row['checkpoint_s']:.2f}",
            f"{row['ratio']:.2f}x",
        )
    pack = Table(
        title="bit packing: GB/s of float32 weights, and bitpack vs numpy (higher is better)", title_justify="left"
    )
    for column in (
        "weights",
        "pack bitpack",
        "pack numpy",
        "pack vs numpy",
        "unpack bitpack",
        "unpack numpy",
        "unpack vs numpy",
    ):
        pack.add_column(column, justify="right")
    for row in result["bitpack"]:
        cells = [_weights_label(row["weights"])]
        for operation in ("pack", "unpack"):
            cells += [
                f"{row[f'{operation}_bitpack_gbps']:.2f}",
                f"{row[f'{operation}_numpy_gbps']:.2f}",
                f"{row[f'{operation}_ratio_to_numpy']:.2f}x",
            ]
        pack.add_row(*cells)
    for table in (sizes, io, pack):
        console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write ``benchmarks/results/container[-quick].json`` and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bit packing up to 1M weights and fewer repeats (seconds)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1: stable on a shared CPU)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/container[-quick].json)"
    )
    args = parser.parse_args(argv)
    from benchmarks.machine import RESULTS, write_result

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result = run_benchmark(dict(_QUICK if args.quick else _FULL))
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    output = args.output or RESULTS / ("container-quick.json" if args.quick else "container.json")
    path = write_result(output.stem, result, output.parent, module="benchmarks.bench_container", argv=argv)
    print_tables(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
