"""What every benchmark result records about where it ran."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.atomic import atomic_write_text
from albsnn_compress.distributed import DistContext, resolve_device
from albsnn_compress.versions import package_versions

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


def write_result(name: str, payload: dict[str, Any], folder: Path | None = None) -> Path:
    """Write ``payload`` plus machine info as ``<folder>/<name>.json`` (atomically)."""
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps({"machine": machine_info(), **payload}, indent=2, sort_keys=True) + "\n")
    return path


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` for the benchmarks that train or finetune (latencies stay on the CPU)."""
    parser.add_argument("--device", default="cpu", help="train/finetune on auto|cpu|cuda|cuda:N (default cpu)")


def device_context(name: str) -> DistContext:
    """A one-process context on device ``name`` (``auto`` picks CUDA when present)."""
    return DistContext(device=resolve_device(name))
