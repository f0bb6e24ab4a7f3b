"""What every benchmark result records about where it ran, and the one function that writes results.

Every result JSON goes through :func:`write_result`, which adds ``machine`` (this
module) and ``provenance`` (:mod:`benchmarks.provenance`: commit, dirty flag,
UTC date, argv) to the benchmark's payload.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.files.atomic import atomic_write_text
from albsnn_compress.training.distributed import DistContext, resolve_device
from albsnn_compress.versions import package_versions
from benchmarks.provenance import provenance

__all__ = ["machine_info", "write_result", "add_device_argument", "device_context", "RESULTS"]

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, GPU (if any), threads and package versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "versions": package_versions(),
    }


def write_result(
    name: str, payload: dict[str, Any], folder: Path | None = None, *, module: str, argv: Sequence[str] | None = None
) -> Path:
    """Write ``payload`` plus ``machine`` and ``provenance`` as ``<folder>/<name>.json`` (atomically).

    Args:
        name: the file name without ``.json``.
        payload: the benchmark's own fields.
        folder: where to write (default ``benchmarks/results``).
        module: the benchmark's module (``benchmarks.bench_container``), for the recorded command.
        argv: its command-line arguments (default ``sys.argv[1:]``).
    """
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    result = {"machine": machine_info(), "provenance": provenance(module, argv), **payload}
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` for the benchmarks that train or finetune (latencies stay on the CPU)."""
    parser.add_argument("--device", default="cpu", help="train/finetune on auto|cpu|cuda|cuda:N (default cpu)")


def device_context(name: str) -> DistContext:
    """A one-process context on device ``name`` (``auto`` picks CUDA when present)."""
    return DistContext(device=resolve_device(name))
