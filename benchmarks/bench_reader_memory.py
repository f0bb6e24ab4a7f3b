"""Peak memory and time of the readers: reading a container or a checkpoint, and parsing a worst-case header.

Run from the repository root::

    python -m benchmarks.bench_reader_memory            # models of 4 to 64 MiB, 16 MiB headers (about a minute)
    python -m benchmarks.bench_reader_memory --quick    # models of 1 and 4 MiB, 4 MiB headers (seconds)

Reading: fully connected networks (``flatten -> linear W -> bn -> lif -> linear
W -> bn -> lif -> linear 10``, random weights) whose float32 model is about the
size given, written three ways: a container with both hidden layers binarized,
a container with nothing binarized, and a ``model.pt`` checkpoint. Each read
runs in a fresh process that has already read a small file (imports and
first-call costs are not the file's); the peak is ``VmHWM`` after resetting it
through ``/proc/self/clear_refs`` (``ru_maxrss`` would keep the parent's peak
across ``exec``), minus the resident size just before. ``ratio`` is that peak
over ``file bytes + model bytes`` (the model: every float32 tensor of the
built network, which a reader must allocate); ``docs/format.md`` section 4
quotes it.

Parsing: ``decode_header`` (UTF-8, then ``strict_loads`` with the container's
caps: depth 32, 2^18 objects and arrays) of header texts of the worst shapes
found for the old parser (millions of tiny arrays or objects, arrays nested
within the depth cap) and of the scalar shapes that cost Python the most bytes
per input byte (integers, floats, short strings), each at the 16 MiB header
cap: seconds and peak added memory, in a fresh process each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from albsnn_compress.binarize import binarize_
from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["main", "run_benchmark"]

_FULL = {"model_mib": [4, 16, 64], "header_mib": 16}
_QUICK = {"model_mib": [1, 4], "header_mib": 4}
_GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "fc_float16.albsnn"

_STATUS = """
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

def restart_peak():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
"""

_READ = (
    textwrap.dedent("""
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    from albsnn_compress.model_file import load_model_file
""")
    + _STATUS
    + textwrap.dedent("""
    load_model_file(sys.argv[2])
    before = status("VmRSS")
    restart_peak()
    start = time.perf_counter()
    model = load_model_file(sys.argv[1]).model
    seconds = time.perf_counter() - start
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"added": status("VmHWM") - before, "file": os.path.getsize(sys.argv[1]), "model": model_bytes,
                      "seconds": seconds}))
""")
)

_PARSE = (
    textwrap.dedent("""
    import json, sys, time
    from albsnn_compress.errors import ContainerError
    from albsnn_compress.formats.container.header import decode_header
""")
    + _STATUS
    + textwrap.dedent("""
    raw = open(sys.argv[1], "rb").read()
    before = status("VmRSS")
    restart_peak()
    start = time.perf_counter()
    try:
        decode_header(raw)
        outcome = "parsed"
    except ContainerError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - start
    print(json.dumps({"added": status("VmHWM") - before, "seconds": seconds, "outcome": outcome}))
""")
)


def _width(model_mib: int) -> int:
    """Hidden width W so that 784 W + W^2 + 10 W float32 weights are about ``model_mib`` MiB."""
    target = model_mib * (1 << 20) / 4
    return int((-(794) + (794**2 + 4 * target) ** 0.5) / 2)


def _write_models(folder: Path, model_mib: int) -> dict[str, Path]:
    width = _width(model_mib)
    spec = {
        "name": f"fc-{width}",
        "input": {"shape": [1, 28, 28]},
        "num_classes": 10,
        "layers": [
            {"type": "flatten"},
            {"type": "linear", "out_features": width, "bias": False},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": width, "bias": False},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 10},
        ],
    }
    torch.manual_seed(0)
    model = SpikingNet(spec).eval()
    paths = {
        "checkpoint": folder / f"fc{model_mib}.pt",
        "container, float32": folder / f"fc{model_mib}-float.albsnn",
        "container, binarized": folder / f"fc{model_mib}-binary.albsnn",
    }
    save_checkpoint(paths["checkpoint"], model, {})
    write_container(paths["container, float32"], model)
    binarize_(model, ["layers.linear1", "layers.linear2"])
    write_container(paths["container, binarized"], model)
    return paths


def _child(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _headers(folder: Path, mib: int) -> dict[str, Path]:
    """Header texts of ``mib`` MiB in the shapes that cost the old parser most."""
    room = mib * (1 << 20) - 64

    def body(unit: str, last: str) -> str:
        return '{"a":[' + unit * ((room - 10) // len(unit.encode())) + last + "]}"

    shapes = {
        "tiny arrays [[],[],...]": body("[],", "[]"),
        'tiny objects [{"a":0},...]': body('{"a":0},', "0"),
        "arrays 29 deep, repeated": body("[" * 29 + "0" + "]" * 29 + ",", "0"),
        "flat integers [0,0,...]": body("0,", "0"),
        "large integers [1234567890,...]": body("1234567890,", "0"),
        "floats [0.5,0.5,...]": body("0.5,", "0"),
        "two-letter strings": body('"ab",', '"ab"'),
        "non-ASCII strings of 1 KiB": body('"' + "é" * 512 + '",', '""'),
    }
    paths = {}
    for index, (name, text) in enumerate(shapes.items()):
        paths[name] = folder / f"header{index}.json"
        paths[name].write_bytes(text.encode("utf-8"))
    return paths


def run_benchmark(quick: bool) -> dict[str, Any]:
    """Measure every case; returns the result payload (without machine and provenance)."""
    settings = _QUICK if quick else _FULL
    reads, parses = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model_mib in settings["model_mib"]:
            for kind, path in _write_models(folder, model_mib).items():
                measured = _child(_READ, str(path), str(_GOLDEN))
                measured.update(
                    kind=kind,
                    model_mib=model_mib,
                    ratio=round(measured["added"] / (measured["file"] + measured["model"]), 3),
                )
                reads.append(measured)
                path.unlink()
        for name, path in _headers(folder, settings["header_mib"]).items():
            measured = _child(_PARSE, str(path))
            measured.update(
                shape=name, header_bytes=path.stat().st_size, ratio=round(measured["added"] / path.stat().st_size, 2)
            )
            parses.append(measured)
    return {"reads": reads, "parses": parses, "settings": settings, "quick": quick, "torch_threads": 1}


def _print(result: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="peak memory of reading (added to a warmed-up process)")
    for column in ("model", "file", "file MB", "model MB", "peak added MB", "ratio to file + model", "seconds"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for row in result["reads"]:
        table.add_row(
            f"{row['model_mib']} MiB",
            row["kind"],
            f"{row['file'] / 1e6:.2f}",
            f"{row['model'] / 1e6:.2f}",
            f"{row['added'] / 1e6:.1f}",
            f"{row['ratio']:.2f}",
            f"{row['seconds']:.2f}",
        )
    console.print(table)
    table = Table(title="decode_header of a worst-case header")
    for column in ("shape", "MiB", "seconds", "peak added MB", "x header", "outcome"):
        table.add_column(column, justify="left" if column in ("shape", "outcome") else "right")
    for row in result["parses"]:
        table.add_row(
            row["shape"],
            f"{row['header_bytes'] / (1 << 20):.1f}",
            f"{row['seconds']:.2f}",
            f"{row['added'] / 1e6:.0f}",
            f"{row['ratio']:.1f}",
            row["outcome"][:60],
        )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the tables and write the result JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="models of 1 and 4 MiB, 4 MiB headers (seconds)")
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/reader-memory[-quick].json)"
    )
    parser.add_argument(
        "--label",
        default=None,
        help="what code was measured, recorded in the result (e.g. an older tree exported with git archive)",
    )
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        raise SystemExit("bench_reader_memory reads /proc/self/status: Linux only")
    from benchmarks.machine import RESULTS, write_result

    result = run_benchmark(args.quick)
    result["label"] = args.label
    _print(result)
    output = args.output or RESULTS / ("reader-memory-quick.json" if args.quick else "reader-memory.json")
    path = write_result(
        output.stem,
        result,
        output.parent,
        module="benchmarks.bench_reader_memory",
        argv=sys.argv[1:] if argv is None else argv,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
