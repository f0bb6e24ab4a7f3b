"""The hostile-input battery of issue 30: every failure class replayed on every reader it applies to, through the CLI.

Run from the repository root::

    python -m benchmarks.bench_hostile            # every case (about 10 minutes on 2 shared cores)
    python -m benchmarks.bench_hostile --quick    # one case per class (about a minute)
    python -m benchmarks.bench_hostile --only 'report|export c'   # the cases whose key matches

Each case builds its hostile input in a temporary folder (small files only: sparse files made
with ``truncate``, gzip bombs made of one repeated small member, HDF5 datasets that declare
gigabytes and store nothing) and returns the ``albsnn-compress`` command line that reads it.
The command runs in a fresh interpreter (``python -c``) that imports the CLI and the libraries
the readers load lazily, caps its address space at its size after the imports plus 2 GiB
(``RLIMIT_AS``), restarts its peak resident size (``/proc/self/clear_refs``) and calls
``albsnn_compress.cli.main.main(argv)``; it records the exit status, the seconds and the peak
resident memory the command added (``VmHWM`` after minus ``VmRSS`` before). A case still running
after 60 s is killed and counted as a hang.

A case is **clean** when

* expected ``refused``: exit status 2, stderr exactly one line starting with ``error:`` that
  names the reason the case is about (a fragment per case), no ``Traceback``, and the case's
  folder untouched (no file written, changed or removed);
* expected ``ok``: exit status 0 (and, where a case says so, a fragment in stdout);
* always: no raw control character in stdout or stderr (C0 but ``\\n`` and ``\\t``, DEL, C1,
  bidi overrides U+202A-U+202E and U+2066-U+2069, bytes that are not UTF-8), no ``MemoryError``,
  no exception escaping the CLI, ``/dev/full`` and ``/dev/null`` still the same character devices.

NIR ``inspect`` describes a file whose defect is what a value means (exit 0, the import verdict
``cannot be imported: ...`` in its output) and refuses one its reader cannot bound or type
(:data:`INSPECT_EXPECTED`), as ``tests/test_nir_hostile.py`` allows both.

The cases of the ``-o /dev/full`` kind run with guards that raise (the case is then not clean)
instead of renaming, removing or creating anything under ``/dev``: a broken writer cannot replace
the device even when the battery runs as root.

The result (``benchmarks/results/hostile-battery.json``; ``--quick``: ``hostile-battery-quick.json``,
``--only``: ``hostile-battery-only.json``)
holds every case's outcome and the counts per class and per reader, with ``machine`` and
``provenance`` (commit and dirty flag) from :func:`benchmarks.machine.write_result`.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CASES", "CLASSES", "Case", "main", "run_battery", "unsafe_characters"]

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30
BUDGET_BYTES = 2 * GIB
"""Address space a case may use beyond the interpreter after its imports."""
TIMEOUT_S = 60.0
"""A case still running after this is a hang."""
RESULT_NAME = "hostile-battery"

CLASSES = {
    1: "dataset readers trust sizes",
    2: "NIR metadata recursion and sizes",
    3: "report renderer",
    4: "outputs",
    5: "NIR values without meaning",
    6: "work that never ends",
    7: "text from files reaching terminals",
    8: "C export sets",
}

# -- the child: one command under the cap ---------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, os, resource, sys, time, traceback
    record_path, argv, guard = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
    import torch
    torch.set_num_threads(1)
    import albsnn_compress.cli.main as cli_main
    for name in ("h5py", "nir", "PIL.Image", "matplotlib", "matplotlib.pyplot", "onnx",
                 "albsnn_compress.formats.nir.summary", "albsnn_compress.formats.nir.read",
                 "albsnn_compress.report.charts", "albsnn_compress.pipeline"):
        try:  # what the readers import lazily: imported before the cap and the measurement
            __import__(name)
        except ImportError:
            pass

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    class DeviceTouched(BaseException):
        pass

    if guard:  # a write meant for a regular file must never land on a device node (this may run as root)
        import tempfile

        def in_dev(path):
            try:
                text = os.fsdecode(path) if not isinstance(path, int) else os.readlink(f"/proc/self/fd/{path}")
            except (TypeError, OSError):
                return False
            return os.path.abspath(text).startswith("/dev/")

        def guarded(name, *positions, check_kw=()):
            real = getattr(os, name)

            def call(*args, **kwargs):
                values = [args[i] for i in positions if i < len(args)] + [kwargs[k] for k in check_kw if k in kwargs]
                if any(in_dev(value) for value in values):
                    raise DeviceTouched(f"os.{name}{args!r} reaches /dev")
                return real(*args, **kwargs)

            setattr(os, name, call)

        for name in ("replace", "rename", "link", "symlink"):
            guarded(name, 0, 1, check_kw=("src", "dst"))
        for name in ("unlink", "remove", "rmdir", "mkdir", "chmod", "chown", "truncate", "mkfifo", "mknod", "fchmod"):
            guarded(name, 0, check_kw=("path", "fd"))
        real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

        def mkstemp(*args, **kwargs):
            if in_dev(kwargs.get("dir") or (args[2] if len(args) > 2 else "") or "."):
                raise DeviceTouched(f"a temporary file in {kwargs.get('dir')}")
            return real_mkstemp(*args, **kwargs)

        def mkdtemp(*args, **kwargs):
            if in_dev(kwargs.get("dir") or (args[2] if len(args) > 2 else "") or "."):
                raise DeviceTouched(f"a temporary folder in {kwargs.get('dir')}")
            return real_mkdtemp(*args, **kwargs)

        tempfile.mkstemp, tempfile.mkdtemp = mkstemp, mkdtemp

    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + int(sys.argv[4]), resource.RLIM_INFINITY))
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) restarts from now
    start = time.perf_counter()
    code, escaped = None, None
    try:
        cli_main.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # what the battery must never see
        escaped = f"{type(exc).__name__}: {exc}"[:500]
        traceback.print_exc()
        code = 1
    seconds = time.perf_counter() - start
    sys.stdout.flush()
    sys.stderr.flush()
    with open(record_path, "w") as stream:
        json.dump({"exit": code, "seconds": seconds, "added": status("VmHWM") - before, "escaped": escaped}, stream)
""")


# -- what a clean case prints ----------------------------------------------------------------------------------------

_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def unsafe_characters(text: str) -> list[str]:
    """The raw control characters in ``text`` a terminal would act on (as escapes, for the record)."""
    bad = []
    for char in text:
        code = ord(char)
        if char in "\n\t":
            continue
        if code < 0x20 or 0x7F <= code < 0xA0 or code in _BIDI or 0xDC80 <= code <= 0xDCFF:
            bad.append(f"U+{code:04X}" if code < 0xDC80 or code > 0xDCFF else f"byte 0x{code - 0xDC00:02x}")
    return sorted(set(bad))


# -- the workspace: shared valid inputs, each case's own folder -------------------------------------------------------


class Workspace:
    """The shared valid inputs (built once, on first use) and the folder of the case being built."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        self.base.mkdir()
        self.dir = root  # set per case

    # models -------------------------------------------------------------------------------------------------------

    @functools.cache  # noqa: B019 - one workspace per run
    def checkpoint(self, kind: str) -> Path:
        """A tiny untrained checkpoint: ``fashion-mnist``/``cifar10`` (flatten, linear), ``digits`` (digits-small)."""
        import torch

        from albsnn_compress.checkpoint import save_checkpoint
        from albsnn_compress.snn.spec import SpikingNet
        from albsnn_compress.training.train_model import resolve_architecture

        torch.manual_seed(0)
        if kind == "digits":
            spec = resolve_architecture("digits-small", "digits")
        else:
            shape = [1, 28, 28] if kind == "fashion-mnist" else [3, 32, 32]
            spec = {"input": {"shape": shape}, "num_classes": 10, "layers": [{"type": "flatten"}, {"type": "linear"}]}
            spec["layers"][1]["out_features"] = 10
        path = self.base / f"{kind}.pt"
        save_checkpoint(path, SpikingNet(spec).eval(), {"dataset": kind})
        return path

    @functools.cache  # noqa: B019
    def container(self, metadata_json: str = "{}") -> Path:
        """A tiny conv container (conv, bn, lif, conv, gap on 1x8x8) with ``metadata`` (JSON text)."""
        import torch

        from albsnn_compress.formats.container.file import write_container
        from albsnn_compress.snn.spec import SpikingNet

        torch.manual_seed(0)
        model = SpikingNet(_TINY_SPEC, 2).eval()
        path = self.base / f"tiny-{hashlib.sha256(metadata_json.encode()).hexdigest()[:8]}.albsnn"
        write_container(path, model, metadata=json.loads(metadata_json))
        return path

    @functools.cache  # noqa: B019
    def nir_file(self, kind: str) -> Path:
        """A valid NIR file: ``ours`` (digits-small, T=4), ``foreign`` (built with NIR's API), ``wide`` (fmnist-vgg)."""
        import nir
        import numpy as np
        import torch

        from albsnn_compress import export_nir
        from albsnn_compress.formats.nir.mapping import DT
        from albsnn_compress.snn.presets import make_preset
        from albsnn_compress.snn.spec import SpikingNet
        from albsnn_compress.training.train_model import resolve_architecture

        path = self.base / f"{kind}.nir"
        torch.manual_seed(0)
        if kind == "ours":
            export_nir(SpikingNet(resolve_architecture("digits-small", "digits"), 4).eval(), path)
        elif kind == "wide":
            export_nir(SpikingNet(make_preset("fmnist-vgg", [1, 28, 28], 10, [0.286], [0.353]), 1).eval(), path)
        else:
            rng = np.random.default_rng(0)
            shape = (4, 8, 8)
            graph = nir.NIRGraph(
                nodes={
                    "input": nir.Input(input_type=np.array([1, 8, 8])),
                    "conv": nir.Conv2d(
                        input_shape=(8, 8),
                        weight=rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32),
                        bias=np.zeros(4, np.float32),
                        stride=(1, 1),
                        padding=(1, 1),
                        dilation=(1, 1),
                        groups=1,
                    ),
                    "lif": nir.LIF(
                        tau=np.full(shape, 2 * DT),
                        r=np.ones(shape),
                        v_leak=np.zeros(shape),
                        v_threshold=np.ones(shape),
                        v_reset=np.zeros(shape),
                    ),
                    "flat": nir.Flatten(input_type=np.array(shape), start_dim=0),
                    "dense": nir.Affine(
                        weight=rng.normal(0, 0.2, (10, 256)).astype(np.float32), bias=np.zeros(10, np.float32)
                    ),
                    "output": nir.Output(output_type=np.array([10])),
                },
                edges=[("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "dense"), ("dense", "output")],
            )
            nir.write(path, graph)
        return path

    @functools.cache  # noqa: B019
    def report(self) -> dict[str, Any]:
        """A valid report document of a tiny model (one layer binarized), as a compress run writes it."""
        import torch

        from albsnn_compress.binarize import binarize_
        from albsnn_compress.report import build_report
        from albsnn_compress.search.result import CompressionResult, LayerDecision, SearchStep
        from albsnn_compress.snn.spec import SpikingNet
        from albsnn_compress.storage import layer_storage, total_bits

        torch.manual_seed(0)
        model = SpikingNet(_TINY_SPEC)
        full = total_bits(layer_storage(model, []))[0]
        binarize_(model, ["layers.conv1"])
        after = total_bits(layer_storage(model, ["layers.conv1"]))[1]
        chosen = ["layers.conv1"]
        result = CompressionResult(
            model=model,
            binarized=chosen,
            candidates=["layers.conv1", "layers.conv2"],
            decisions=[
                LayerDecision("layers.conv1", 36, True, 0.01, 0.05, 988, "est. 0.05 pts <= remaining budget 0.20"),
                LayerDecision("layers.conv2", 12, False, 0.02, 0.4, 300, "est. 0.40 pts > remaining budget 0.15"),
            ],
            trajectory=[
                SearchStep(0, "start", [], [], 90.0, 0.0, full),
                SearchStep(1, "binarize", chosen, chosen, 89.9, 0.1, after, {chosen[0]: 0.05}, {chosen[0]: 0.01}, 1.5),
                SearchStep(2, "final", [], chosen, 89.9, 0.1, after, {}, {}, 2.0),
            ],
            budget=0.2,
            accuracy={"val_before": 90.0, "val_after": 89.9, "test_before": 89.5, "test_after": 89.25},
            timings={"estimate": 0.5, "search": 4.25, "total": 5.0},
            finetune_epochs=1.5,
            strategy="adaptive",
            estimator="weight",
            seed=0,
            config={"dataset": "digits"},
        )
        return build_report(result, versions={"albsnn-compress": "bench"})

    # per-case helpers ----------------------------------------------------------------------------------------------

    def path(self, *parts: str) -> Path:
        path = self.dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def copy(self, source: Path, name: str | None = None) -> Path:
        target = self.path(name or source.name)
        shutil.copyfile(source, target)
        return target

    def report_file(self, edit: Callable[[dict[str, Any]], None] | None = None, in_set: bool = False) -> Path:
        """The report (edited in memory by ``edit``) written as JSON in the case folder, not validated again; alone
        (a file handed over by itself), or ``in_set``: in a complete output set with its manifest, as compress
        leaves it."""
        import copy

        from albsnn_compress.files.output_set import OutputSet
        from albsnn_compress.report import dump_json

        document = copy.deepcopy(self.report())
        if edit is not None:
            edit(document)
        if not in_set:
            path = self.path("report.json")
            path.write_text(dump_json(document), encoding="utf-8")
            return path
        outputs = OutputSet(self.dir / "run", ("report.json",))
        outputs.prepare()
        with outputs.staging() as stage:
            (stage / "report.json").write_text(dump_json(document), encoding="utf-8")
        return outputs.paths["report.json"]

    def nir_damaged(self, kind: str, *edits: Callable[[Any], None], name: str = "damaged.nir") -> Path:
        """A copy of NIR file ``kind`` edited in place with h5py."""
        import h5py

        path = self.copy(self.nir_file(kind), name)
        with h5py.File(path, "r+") as handle:
            for edit in edits:
                edit(handle)
        return path


_TINY_SPEC = {
    "name": "tiny",
    "input": {"shape": [1, 8, 8]},
    "num_classes": 10,
    "layers": [
        {"type": "conv", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 10, "kernel_size": 1, "bias": True},
        {"type": "gap"},
    ],
}


# -- hostile dataset files (the constructions of tests/test_dataset_hostile.py) ----------------------------------------


def _idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


def _idx_images(count: int, rows: int = 28, cols: int = 28) -> bytes:
    return _idx_header(2051, count, rows, cols) + bytes(count * rows * cols)


def _idx_labels(count: int) -> bytes:
    return _idx_header(2049, count) + bytes(i % 10 for i in range(count))


@functools.cache
def _zeros_member(size: int = 64 << 20) -> bytes:
    """One gzip member holding ``size`` zero bytes (64 MiB in about 64 KB), compressed 4 MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(4 << 20)
    return b"".join(packer.compress(chunk) for _ in range(size // len(chunk))) + packer.flush()


def _gzip_bomb(path: Path, head: bytes, inflated: int) -> Path:
    """``head`` then ``inflated`` zero bytes as gzip: one member for the head, then the zeros member repeated, written
    member by member (4 GiB of zeros take about 4 MB on disk)."""
    member = _zeros_member()
    with open(path, "wb") as stream:
        stream.write(gzip.compress(head))
        for _ in range(max(1, inflated // (64 << 20))):
            stream.write(member)
    return path


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as stream:
        stream.write(head)
        stream.truncate(size)  # a hole: gigabytes on paper, no disk and no time
    return path


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


_FMNIST_FILES = {
    "train-images-idx3-ubyte": _idx_images(20),
    "train-labels-idx1-ubyte": _idx_labels(20),
    "t10k-images-idx3-ubyte": _idx_images(5),
    "t10k-labels-idx1-ubyte": _idx_labels(5),
}


def _fashion_root(root: Path, replace: dict[str, bytes | None] | None = None, gz: bool = False) -> Path:
    """A small valid FashionMNIST tree under ``root``; ``replace`` swaps a file's bytes (``None``: leave it out)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, data in {**_FMNIST_FILES, **(replace or {})}.items():
        if data is None:
            continue
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return raw


def _cifar_root(root: Path, records: dict[str, int] | None = None) -> Path:
    """A small valid CIFAR-10 binary folder (2 records per train file, 3 in the test file)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    counts = {f"data_batch_{i}.bin": 2 for i in range(1, 6)} | {"test_batch.bin": 3} | (records or {})
    for name, count in counts.items():
        (folder / name).write_bytes(bytes(count * 3073))
    return folder


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@functools.cache
def _png(width: int = 32, height: int = 32) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _patched_png(width: int, height: int) -> bytes:
    """A 32x32 PNG whose IHDR declares ``width`` x ``height`` (its CRC recomputed): only the header lies."""
    data = bytearray(_png())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _image_root(root: Path, train: int = 0, test: int = 1) -> Path:
    """An image-folder tree with every CIFAR-10 class folder and ``train``/``test`` valid PNGs in the first."""
    for split, count in (("train", train), ("test", test)):
        for name in _CIFAR10_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (root / split / _CIFAR10_CLASSES[0] / f"{index:04d}.png").write_bytes(_png())
    return root


def _eval(ws: Workspace, kind: str, root: Path) -> list[str]:
    return ["eval", str(ws.checkpoint(kind)), "--data-root", str(root), "--device", "cpu"]


def _train(dataset: str, root: Path, ws: Workspace) -> list[str]:
    return ["train", "--dataset", dataset, "--data-root", str(root), "--arch", "digits-fc", "--epochs", "1",
            "--device", "cpu", "--quiet", "-o", str(ws.dir / "trained.pt")]  # fmt: skip


def _fm_eval(replace: dict[str, bytes | None] | None = None, gz: bool = False, after=None) -> Callable:
    def build(ws: Workspace) -> list[str]:
        raw = _fashion_root(ws.dir / "data", replace, gz)
        if after is not None:
            after(raw)
        return _eval(ws, "fashion-mnist", ws.dir / "data")

    return build


def _fm_bomb(stem: str, head: bytes, inflated: int, command: str = "eval") -> Callable:
    def build(ws: Workspace) -> list[str]:
        raw = _fashion_root(ws.dir / "data", {stem: None})
        _gzip_bomb(raw / f"{stem}.gz", head, inflated)
        if command == "train":
            return _train("fashion-mnist", ws.dir / "data", ws)
        if command == "compress":
            return _compress(ws.checkpoint("fashion-mnist"), ws, "--data-root", str(ws.dir / "data"))
        return _eval(ws, "fashion-mnist", ws.dir / "data")

    return build


def _fm_sparse(stem: str, gz: bool) -> Callable:
    def build(ws: Workspace) -> list[str]:
        raw = _fashion_root(ws.dir / "data", {stem: None})
        head = _idx_header(2051, 10000, 28, 28)
        _sparse(raw / (stem + ".gz" if gz else stem), 3 * GIB, gzip.compress(head) if gz else head)
        return _eval(ws, "fashion-mnist", ws.dir / "data")

    return build


def _fm_fifo(stem: str, gz: bool) -> Callable:
    def build(ws: Workspace) -> list[str]:
        raw = _fashion_root(ws.dir / "data", {stem: None}, gz)
        _fifo(raw / (stem + ".gz" if gz else stem))
        if stem.startswith("train"):
            return _train("fashion-mnist", ws.dir / "data", ws)
        return _eval(ws, "fashion-mnist", ws.dir / "data")

    return build


def _cifar_case(change: Callable[[Path], None], command: str = "eval") -> Callable:
    def build(ws: Workspace) -> list[str]:
        change(_cifar_root(ws.dir / "data"))
        return _train("cifar10", ws.dir / "data", ws) if command == "train" else _eval(ws, "cifar10", ws.dir / "data")

    return build


def _replace_with(name: str, make: Callable[[Path], object]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / name).unlink()
        make(folder / name)

    return change


def _image_case(change: Callable[[Path], None] | None, test: int = 1) -> Callable:
    def build(ws: Workspace) -> list[str]:
        root = _image_root(ws.dir / "data", test=test)
        if change is not None:
            change(root / "test" / _CIFAR10_CLASSES[0] / "0000.png")
        return _eval(ws, "cifar10", root)

    return build


def _png_declaring(width: int, height: int) -> Callable[[Path], None]:
    return lambda png: png.write_bytes(_patched_png(width, height))


# -- hostile NIR files (the edits of tests/test_nir_hostile.py) --------------------------------------------------------

Edit = Callable[[Any], None]


def put(key: str, value: Any, **options: Any) -> Edit:
    """Replace (or add) dataset ``key`` with ``value``."""

    def edit(handle: Any) -> None:
        if key in handle:
            del handle[key]
        handle.create_dataset(key, data=value, **options)

    return edit


def text(key: str, value: str) -> Edit:
    def edit(handle: Any) -> None:
        import h5py

        put(key, value, dtype=h5py.string_dtype())(handle)

    return edit


def declared(key: str, shape: tuple[int, ...], dtype: str = "f4") -> Edit:
    """A dataset that declares ``shape`` and stores nothing (chunked, gzip, never written): gigabytes in bytes."""

    def edit(handle: Any) -> None:
        if key in handle:
            del handle[key]
        chunks = tuple(min(size, 1 << 10) for size in shape)
        handle.create_dataset(key, shape=shape, dtype=dtype, fillvalue=0, chunks=chunks, compression="gzip")

    return edit


def edges(pairs: list[tuple[str, str]]) -> Edit:
    def edit(handle: Any) -> None:
        import h5py
        import numpy as np

        put("node/edges", np.array(pairs, dtype=object), dtype=h5py.string_dtype())(handle)

    return edit


def _np(builder: Callable[[Any], Any]) -> Any:
    """A value built with numpy at edit time (numpy imported lazily)."""
    import numpy as np

    return builder(np)


def lazy_put(key: str, make: Callable[[Any], Any], **options: Any) -> Edit:
    return lambda handle: put(key, _np(make), **options)(handle)


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


NEURON = "node/metadata/albsnn_neuron"
MODEL_NAME = "node/metadata/albsnn_model"
TIMESTEPS = "node/metadata/albsnn_timesteps"
FOREIGN_LIF = "node/nodes/lif"
FOREIGN_SHAPE = (4, 8, 8)
OURS_CONV = "node/nodes/conv1"


def _nir_args(command: str, kind: str, path: Path, ws: Workspace) -> list[str]:
    """The command line reading NIR file ``path`` (made from ``kind``): import, inspect or compress."""
    dataset = "fashion-mnist" if kind == "wide" else "digits"
    steps = ["-T", "2"] if kind == "foreign" else []
    if command == "inspect":
        return ["inspect", str(path)]
    if command == "import":
        return ["import", str(path), "--dataset", dataset, *steps, "-o", str(ws.dir / "imported.pt")]
    steps = ["--timesteps", "2"] if kind == "foreign" else []
    return _compress(path, ws, "--dataset", dataset, *steps)


def _compress(model: Path, ws: Workspace, *extra: str, out: Path | None = None) -> list[str]:
    """A cheap compress: no search, no finetuning (the readers and writers run all the same)."""
    return [str(model), "--budget", "1", "--strategy", "none", "--epochs", "0", "--trial-epochs", "0",
            "--device", "cpu", "--quiet", *extra, "-o", str(out or ws.dir / "out")]  # fmt: skip


def _nir_case(command: str, kind: str, *edits: Edit) -> Callable:
    def build(ws: Workspace) -> list[str]:
        return _nir_args(command, kind, ws.nir_damaged(kind, *edits), ws)

    return build


# -- reports ----------------------------------------------------------------------------------------------------------


def _report_case(form: str, edit: Callable[[dict[str, Any]], None] | None = None, in_set: bool = False) -> Callable:
    def build(ws: Workspace) -> list[str]:
        return ["report", str(ws.report_file(edit, in_set)), "--format", form]

    return build


def _names(name: str) -> Callable[[dict[str, Any]], None]:
    """Every layer, tensor and the estimator named ``name`` (the charts draw the layer and estimator names)."""

    def edit(report: dict[str, Any]) -> None:
        for layer in report["layers"]:
            layer["name"] = name
        report["search"]["estimator"] = name

    return edit


def _zero_sizes(report: dict[str, Any]) -> None:
    for layer in report["layers"]:
        for key in ("bits_before", "bits_after", "bytes_before", "bytes_after", "saved_bits"):
            layer[key] = 0
        for tensor in layer["tensors"]:
            tensor["bits_before"] = tensor["bits_after"] = 0
    for key in ("bits_before", "bits_after", "bytes_before", "bytes_after"):
        report["storage"]["computed"][key] = 0
    for step in report["trajectory"]:
        step["storage_bits"] = 0


def _many_layers(count: int) -> Callable[[dict[str, Any]], None]:
    def edit(report: dict[str, Any]) -> None:
        first = report["layers"][0]
        report["layers"] = [dict(first, name=f"layers.c{i}") for i in range(count)]
        computed = report["storage"]["computed"]
        computed["bits_before"] = sum(layer["bits_before"] for layer in report["layers"])
        computed["bits_after"] = sum(layer["bits_after"] for layer in report["layers"])

    return edit


HOSTILE_TEXTS = ["\x1b]0;owned\x07", "\x1b[2J\x1b[H", "\x9b31m\x85", "\u202eevil\u2066", "[bold]x[/bold] <script>"]


def _hostile_names(report: dict[str, Any]) -> None:
    pool = iter(HOSTILE_TEXTS * 100)
    report["model"]["name"] = next(pool)
    report["search"]["estimator"] = next(pool)
    for layer in report["layers"]:
        layer["name"], layer["reason"] = next(pool), next(pool)
        for tensor in layer["tensors"]:
            tensor["name"] = next(pool)
    report["search"]["config"] = {next(pool): next(pool)}
    report["versions"] = {next(pool): next(pool)}


# -- outputs ----------------------------------------------------------------------------------------------------------


def _export(fmt: str, container: Path, out: Path) -> list[str]:
    return ["export", str(container), "--format", fmt, "-o", str(out)]


def _onto_input(fmt: str) -> Callable:
    def build(ws: Workspace) -> list[str]:
        container = ws.copy(ws.container(), "model.albsnn")
        return _export(fmt, container, container)

    return build


def _through_symlink(fmt: str) -> Callable:
    """``-o`` is a symbolic link (to a file outside the case's output folder); for a C folder, one of its members."""

    def build(ws: Workspace) -> list[str]:
        container = ws.copy(ws.container(), "model.albsnn")
        secret = ws.path("outside", "secret.txt")
        secret.write_text("outside the output folder")
        if fmt == "c":
            folder = ws.path("c", "x").parent
            (folder / "albsnn_model.h").symlink_to(secret)
            return _export(fmt, container, folder)
        link = ws.path("work", f"out.{fmt}")
        link.symlink_to(secret)
        return _export(fmt, container, link)

    return build


def _to_dev_full(fmt: str) -> Callable:
    def build(ws: Workspace) -> list[str]:
        return _export(fmt, ws.copy(ws.container(), "model.albsnn"), Path("/dev/full"))

    return build


def _report_output(kind: str) -> Callable:
    def build(ws: Workspace) -> list[str]:
        report = ws.report_file()
        if kind == "input":
            out = report
        elif kind == "symlink":
            secret = ws.path("outside", "secret.md")
            secret.write_text("outside")
            out = ws.path("work", "report.md")
            out.symlink_to(secret)
        else:
            out = Path("/dev/full")
        return ["report", str(report), "--format", "md", "-o", str(out)]

    return build


def _compress_output(kind: str) -> Callable:
    def build(ws: Workspace) -> list[str]:
        checkpoint = ws.checkpoint("digits")
        if kind == "input-named-like-a-member":  # the input sits in the output folder under a name the set writes
            folder = ws.path("out", "x").parent
            return _compress(ws.copy(checkpoint, "out/model.albsnn"), ws, out=folder)
        if kind == "member-symlink":
            secret = ws.path("outside", "secret.txt")
            secret.write_text("outside")
            ws.path("out", "model.onnx").symlink_to(secret)
            return _compress(ws.copy(checkpoint, "model.pt"), ws)
        if kind == "foreign-manifest":
            ws.path("out", "manifest.json").write_text('{"name": "my web app", "version": "1.0.0"}')
            return _compress(ws.copy(checkpoint, "model.pt"), ws)
        if kind == "dev-full":
            return _compress(ws.copy(checkpoint, "model.pt"), ws, out=Path("/dev/full"))
        return _compress(ws.copy(checkpoint, "model.pt"), ws, out=ws.dir)  # beside its input: legitimate

    return build


def _c_input_as_member(ws: Workspace) -> list[str]:
    """The container sits in the C folder under the name of a file the export writes."""
    container = ws.copy(ws.container(), "c/albsnn_model.c")
    return _export("c", container, container.parent)


def _c_foreign_manifest(ws: Workspace) -> list[str]:
    folder = ws.path("c", "manifest.json").parent
    (folder / "manifest.json").write_text('{"name": "my web app", "version": "1.0.0"}')
    (folder / "index.js").write_text("console.log('mine')\n")
    return _export("c", ws.copy(ws.container(), "model.albsnn"), folder)


# -- class 6 and 7 builders --------------------------------------------------------------------------------------------


def _train_batch(ws: Workspace, size: int = 4096) -> list[str]:
    return ["train", "--arch", "digits-fc", "--epochs", "1", "--batch-size", str(size), "--device", "cpu", "--quiet",
            "-o", str(ws.dir / "m.pt")]  # fmt: skip


def _compress_batch(ws: Workspace) -> list[str]:
    return [str(ws.checkpoint("digits")), "--budget", "1", "--batch-size", "4096", "--device", "cpu", "--quiet",
            "-o", str(ws.dir / "out")]  # fmt: skip


def _spec_long_layer_name(ws: Workspace) -> list[str]:
    spec = {"input": {"shape": [1, 8, 8]}, "num_classes": 10, "layers": [{"type": "flatten"},
            {"type": "linear", "out_features": 10, "name": "n" * 100_000}]}  # fmt: skip
    arch = ws.path("arch.json")
    arch.write_text(json.dumps(spec))
    return ["train", "--arch", str(arch), "--epochs", "1", "--device", "cpu", "--quiet", "-o", str(ws.dir / "m.pt")]


def _foreign_node_renamed(name: str) -> Edit:
    """Rename the foreign graph's ``lif`` node (its group and both edges that name it)."""

    def edit(handle: Any) -> None:
        handle.move(FOREIGN_LIF, f"node/nodes/{name}")
        pairs = [("input", "conv"), ("conv", name), (name, "flat"), ("flat", "dense"), ("dense", "output")]
        edges(pairs)(handle)

    return edit


def _inspect_hostile_container(as_json: bool) -> Callable:
    def build(ws: Workspace) -> list[str]:
        metadata = {"note\x1b[2J": "\x1b]0;owned\x07 \u202eevil [link] \x9b31m \x85", "dataset": "digits"}
        path = ws.copy(ws.container(json.dumps(metadata)), "model.albsnn")
        return ["inspect", str(path), *(["--json"] if as_json else [])]

    return build


def _eval_hostile_container(ws: Workspace) -> list[str]:
    metadata = {"note\x1b[2J": "\x1b]0;owned\x07 \u202eevil", "dataset": "digits"}
    return ["eval", str(ws.copy(ws.container(json.dumps(metadata)), "model.albsnn")), "--device", "cpu"]


def _report_named(piece: str, exists: bool) -> Callable:
    def build(ws: Workspace) -> list[str]:
        path = ws.path(f"bad{piece}.json")
        if exists:
            path.write_text("{", encoding="utf-8")
        return ["report", str(path)]

    return build


def _dataset_folder_named(ws: Workspace) -> list[str]:
    root = ws.dir / "data\x1b[2J\u202e"
    _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_images(0), "t10k-labels-idx1-ubyte": _idx_labels(0)})
    return _eval(ws, "fashion-mnist", root)


def _checkpoint_named(ws: Workspace) -> list[str]:
    path = ws.path("model\x1b]0;owned\x07\u202e.pt")
    path.write_bytes(b"not a checkpoint at all\n")
    return _compress(path, ws)


# -- the table of cases -----------------------------------------------------------------------------------------------

REFUSED, OK = "refused", "ok"


@dataclass(frozen=True)
class Case:
    """One hostile input on one reader: ``build(workspace) -> argv`` in ``workspace.dir``."""

    klass: int
    reader: str
    name: str
    expected: str  # REFUSED or OK
    build: Callable[[Workspace], list[str]]
    reason: str = ""  # regex the refusal line must match (what the case is about); OK: regex stdout must match
    quick: bool = False
    guard: bool = False  # run with the /dev guards and check the devices afterwards
    needs: tuple[str, ...] = ()  # optional modules the case needs (skipped without them)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.klass}/{self.reader}/{self.name}"


def _dataset_cases() -> list[Case]:
    fm, c10, img = "fashion-mnist IDX", "cifar10 binary", "image folder"
    images, labels = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    wrap = _idx_header(2051, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    cases = [
        Case(1, f"{fm} (eval)", "gz bomb after a valid header (4 GiB)", REFUSED,
             _fm_bomb(images, _idx_header(2051, 10000, 28, 28), 4 * GIB), r"decompresses to more than", quick=True),
        Case(1, f"{fm} (eval)", "gz bomb after a one-image header", REFUSED,
             _fm_bomb(images, _idx_header(2051, 1, 28, 28), 4 * GIB), r"decompresses to more than the 784 bytes"),
        Case(1, f"{fm} (eval)", "gz labels bomb (512 MiB)", REFUSED,
             _fm_bomb(labels, _idx_header(2049, 5), GIB // 2), r"decompresses to more than the 5 bytes"),
        Case(1, f"{fm} (eval)", "IDX dims wrap 2^63", REFUSED, _fm_eval({images: wrap}),
             r"items of shape \[4294967295, 4294967295\]"),
        Case(1, f"{fm} (eval)", "IDX dims wrap 2^64 in gz", REFUSED,
             _fm_eval({images: _idx_header(2051, 2**21, 2**21, 2**22)}, gz=True), r"items of shape"),
        Case(1, f"{fm} (eval)", "IDX count 2^31", REFUSED,
             _fm_eval({images: _idx_header(2051, 2**31, 28, 28)}), r"declares 2147483648 items"),
        Case(1, f"{fm} (eval)", "sparse uncompressed IDX (3 GiB)", REFUSED, _fm_sparse(images, False),
             r"3221225472 bytes, more than"),
        Case(1, f"{fm} (eval)", "sparse gz IDX (3 GiB)", REFUSED, _fm_sparse(images, True),
             r"3221225472 bytes, more than"),
        Case(1, f"{fm} (eval)", "FIFO named t10k-images-idx3-ubyte", REFUSED, _fm_fifo(images, False),
             r"not a regular file"),
        Case(1, f"{fm} (eval)", "FIFO named t10k-images-idx3-ubyte.gz", REFUSED, _fm_fifo(images, True),
             r"not a regular file"),
        Case(1, f"{fm} (eval)", "symlink to /dev/zero named like the images", REFUSED,
             _fm_eval({images: None}, after=lambda raw: (raw / images).symlink_to("/dev/zero")),
             r"not a regular file"),
        Case(1, f"{fm} (eval)", "empty test split", REFUSED,
             _fm_eval({images: _idx_images(0), labels: _idx_labels(0)}), r"holds 0 images"),
        Case(1, f"{fm} (eval)", "valid small copy (control)", OK, _fm_eval(), r"accuracy"),
        Case(1, f"{fm} (train)", "gz bomb in the training images (4 GiB)", REFUSED,
             _fm_bomb("train-images-idx3-ubyte", _idx_header(2051, 60000, 28, 28), 4 * GIB, "train"),
             r"decompresses to more than"),
        Case(1, f"{fm} (train)", "FIFO named train-labels-idx1-ubyte", REFUSED,
             _fm_fifo("train-labels-idx1-ubyte", False), r"not a regular file"),
        Case(1, f"{fm} (compress)", "gz bomb in the training images (4 GiB)", REFUSED,
             _fm_bomb("train-images-idx3-ubyte", _idx_header(2051, 60000, 28, 28), 4 * GIB, "compress"),
             r"decompresses to more than"),
        Case(1, f"{c10} (eval)", "sparse test_batch.bin (3 GB)", REFUSED,
             _cifar_case(_replace_with("test_batch.bin", lambda p: _sparse(p, 3073 * 1_000_000))),
             r"3073000000 bytes, more than"),
        Case(1, f"{c10} (eval)", "FIFO named test_batch.bin", REFUSED,
             _cifar_case(_replace_with("test_batch.bin", _fifo)), r"not a regular file"),
        Case(1, f"{c10} (eval)", "empty test split", REFUSED,
             _cifar_case(lambda folder: (folder / "test_batch.bin").write_bytes(b"")), r"holds 0 images"),
        Case(1, f"{c10} (eval)", "valid small copy (control)", OK, _cifar_case(lambda folder: None), r"accuracy"),
        Case(1, f"{c10} (train)", "sparse data_batch_4.bin (10001 records)", REFUSED,
             _cifar_case(_replace_with("data_batch_4.bin", lambda p: _sparse(p, 3073 * 10001)), "train"),
             r"data_batch_4.bin"),
        Case(1, f"{c10} (train)", "FIFO named data_batch_1.bin", REFUSED,
             _cifar_case(_replace_with("data_batch_1.bin", _fifo), "train"), r"not a regular file"),
        Case(1, f"{img} (eval)", "PNG declaring 10 gigapixels", REFUSED, _image_case(_png_declaring(100_000, 100_000)),
             r"0000\.png"),
        Case(1, f"{img} (eval)", "PNG declaring 400 megapixels", REFUSED, _image_case(_png_declaring(20_000, 20_000)),
             r"0000\.png"),
        Case(1, f"{img} (eval)", "PNG declaring 100 megapixels", REFUSED, _image_case(_png_declaring(10_000, 10_000)),
             r"0000\.png"),
        Case(1, f"{img} (eval)", "sparse image file (1 GiB)", REFUSED,
             _image_case(lambda png: _sparse(png, GIB, _png())), r"1073741824 bytes, more than"),
        Case(1, f"{img} (eval)", "FIFO named 0000.png", REFUSED,
             _image_case(lambda png: (png.unlink(), _fifo(png))), r"not a regular file"),
        Case(1, f"{img} (eval)", "FIFO named 0001.jpg", REFUSED,
             _image_case(lambda png: _fifo(png.with_name("0001.jpg"))), r"not a regular file"),
        Case(1, f"{img} (eval)", "empty test split", REFUSED, _image_case(None, test=0), r"holds 0 images"),
        Case(1, f"{img} (eval)", "valid small copy (control)", OK, _image_case(None), r"accuracy"),
    ]  # fmt: skip
    return cases


def _nir_size_cases() -> list[Case]:
    bombs: list[tuple[str, str, list[Edit], str, str, tuple[str, ...]]] = [
        # name, base file, edits, expected on import, refusal reason, the readers
        ("JSON 30000 deep in the neuron metadata", "ours", [text(NEURON, _deep(30_000))], REFUSED,
         r"albsnn_neuron: .*nesting deeper", ("import", "inspect", "compress")),
        ("input shape 2^62 x 3", "ours", [lazy_put("node/nodes/input/shape", lambda np: np.full(3, 1 << 62))],
         REFUSED, r"input shape", ("import", "inspect", "compress")),
        ("input shape 1 x 2^31 x 2^31", "ours",
         [lazy_put("node/nodes/input/shape", lambda np: np.array([1, 1 << 31, 1 << 31]))], REFUSED,
         r"input shape.*holds mo", ("import", "inspect")),
        ("T=4096 on fmnist-vgg", "wide", [lazy_put(TIMESTEPS, lambda np: np.int64(4096))], REFUSED,
         r"T=4096 needs .* GiB", ("import", "inspect")),
        ("20 MB model name", "ours", [text(MODEL_NAME, "m" * 20_000_000)], REFUSED, r"albsnn_model",
         ("import", "inspect", "compress")),
        ("weight declaring 2^29 values", "ours", [declared(f"{OURS_CONV}/weight", (1 << 29,))], REFUSED,
         r"more than 268435456", ("import", "inspect")),
        ("input normalization of 4M channels", "ours", [
            lazy_put("node/nodes/input/shape", lambda np: np.array([1 << 22, 1, 1])),
            declared("node/nodes/input_norm/metadata/albsnn_mean", (1 << 22,), "f8"),
            declared("node/nodes/input_norm/metadata/albsnn_std", (1 << 22,), "f8")], REFUSED,
         r"input_norm", ("import", "inspect")),
        ("unused metadata dataset declaring 900 MiB", "ours", [declared(f"{OURS_CONV}/metadata/junk", (225 << 20,))],
         OK, r"", ("import", "inspect", "compress")),
    ]  # fmt: skip
    cases = []
    for name, kind, edit_list, expected, reason, readers in bombs:
        for reader in readers:
            if reader == "inspect":
                # inspect describes what it can read and gives the import verdict; a bound of the reader it refuses
                outcome = INSPECT_EXPECTED.get(name, OK)
                why = reason if outcome == REFUSED else (r"yes, at T=4" if expected == OK else r"cannot be imported")
            else:
                outcome, why = expected, reason
            cases.append(
                Case(2, f"NIR {reader}", name, outcome, _nir_case(reader, kind, *edit_list), why,
                     quick=name.startswith("JSON") and reader == "import", needs=("nir", "h5py"))
            )  # fmt: skip
    return cases


INSPECT_EXPECTED: dict[str, str] = {
    "weight declaring 2^29 values": REFUSED,  # a field beyond the reader's element bound: nothing to describe
    "input normalization of 4M channels": OK,
    "bool weight": OK,
    "complex parameter r": REFUSED,  # HDF5 type no NIR array has: refused by the scan, before any read
    "zero stride": REFUSED,  # a size field with a sign NIR's own arithmetic cannot take: refused as it is read
    "negative stride": REFUSED,
    "edge name with an escape sequence": REFUSED,
    "100,000-character node name": REFUSED,
}
"""What ``inspect`` does where it refuses the file itself (its scan and read bounds) instead of describing it with
``cannot be imported``; every other NIR case it describes (exit 0, the verdict in its output)."""


def _nir_value_cases() -> list[Case]:
    shape = FOREIGN_SHAPE
    values: list[tuple[str, str, Edit, str, tuple[str, ...]]] = [
        ("NaN tau", "foreign", lazy_put(f"{FOREIGN_LIF}/tau", lambda np: np.full(shape, np.nan)), r"tau.*NaN or inf",
         ("import", "inspect", "compress")),
        ("inf tau", "foreign", lazy_put(f"{FOREIGN_LIF}/tau", lambda np: np.full(shape, np.inf)), r"tau.*NaN or inf",
         ("import", "inspect")),
        ("negative tau", "foreign", lazy_put(f"{FOREIGN_LIF}/tau", lambda np: np.full(shape, -2e-4)),
         r"tau/dt = -2", ("import", "inspect")),
        ("NaN threshold", "ours", lazy_put("node/nodes/lif1/v_threshold", lambda np: np.full((16, 8, 8), np.nan)),
         r"v_threshold: .*NaN", ("import", "inspect")),
        ("-inf threshold", "foreign", lazy_put(f"{FOREIGN_LIF}/v_threshold", lambda np: np.full(shape, -np.inf)),
         r"v_threshold: .*inf", ("import", "inspect")),
        ("NaN dt", "ours", lazy_put("node/metadata/albsnn_dt", lambda np: np.float64(np.nan)),
         r"albsnn_dt must be a positive number", ("import", "inspect")),
        ("inf dt", "ours", lazy_put("node/metadata/albsnn_dt", lambda np: np.float64(np.inf)),
         r"albsnn_dt must be a positive number", ("import", "inspect")),
        ("negative dt", "ours", lazy_put("node/metadata/albsnn_dt", lambda np: np.float64(-1e-4)),
         r"albsnn_dt must be a positive number", ("import", "inspect")),
        ("zero stride", "ours", lazy_put(f"{OURS_CONV}/stride", lambda np: np.zeros(2, int)),
         r"'stride' \[0, 0\] must be positive", ("import", "inspect")),
        ("negative stride", "ours", lazy_put(f"{OURS_CONV}/stride", lambda np: np.array([-1, -1])),
         r"'stride'.*positive", ("import", "inspect")),
        ("bool weight", "foreign", lazy_put("node/nodes/conv/weight", lambda np: np.ones((4, 1, 3, 3), bool)),
         r"weight must be", ("import", "inspect")),
        ("complex parameter r", "foreign", lazy_put(f"{FOREIGN_LIF}/r", lambda np: np.ones(shape, np.complex64)),
         r"HDF5 type c", ("import", "inspect")),
        ("edges forming a cycle", "foreign",
         edges([("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "dense"), ("dense", "output"),
                ("output", "input")]), r"cycle", ("import", "inspect", "compress")),
        ("edge naming a missing node", "foreign", edges([("input", "conv"), ("conv", "ghost")]),
         r"names a node the graph does not have", ("import", "inspect")),
    ]  # fmt: skip
    cases = []
    for name, kind, edit, reason, readers in values:
        for reader in readers:
            if reader == "inspect":
                outcome = INSPECT_EXPECTED.get(name, OK)
                why = reason if outcome == REFUSED else r"cannot be imported"
            else:
                outcome, why = REFUSED, reason
            cases.append(
                Case(5, f"NIR {reader}", name, outcome, _nir_case(reader, kind, edit), why,
                     quick=name == "NaN tau" and reader == "import", needs=("nir", "h5py"))
            )  # fmt: skip
    return cases


def _report_cases() -> list[Case]:
    cases = []
    for name, edit in (
        (r"names $\invalid{$", _names("$\\invalid{$")),
        (r"names $\frac{a}{b}$", _names("$\\frac{a}{b}$")),
        ("names $ + 600 x { + $", _names("$" + "{" * 600 + "$")),
        ("all-zero byte counts", _zero_sizes),
    ):
        for form in ("html", "md", "terminal"):
            quick = name.startswith(r"names $\invalid") and form == "html"
            cases.append(Case(3, "report", f"{name} ({form})", OK, _report_case(form, edit), quick=quick))
    for form in ("html", "md", "terminal"):
        cases.append(Case(3, "report", f"30000 layers ({form})", REFUSED, _report_case(form, _many_layers(30_000)),
                          r"30000 layers, more than"))  # fmt: skip
        cases.append(Case(3, "report", f"30000 layers, in a complete output set ({form})", REFUSED,
                          _report_case(form, _many_layers(30_000), in_set=True),
                          r"30000 layers, more than"))  # fmt: skip
    cases.append(Case(3, "report", "30000 layers (json)", OK, _report_case("json", _many_layers(30_000))))
    return cases


def _output_cases() -> list[Case]:
    rule_input, rule_link, rule_regular = r"is the input|input", r"symbolic link|symlink", r"regular file|not a folder"
    cases = []
    for fmt in ("onnx", "nir", "c"):
        needs = ("nir", "h5py") if fmt == "nir" else ()
        reader = f"export {fmt}"
        cases += [
            Case(4, reader, "-o onto its input", REFUSED, _onto_input(fmt),
                 rule_input if fmt != "c" else rf"{rule_input}|is a file; the C export writes a folder",
                 quick=fmt == "onnx", needs=needs),
            Case(4, reader, "-o through a symlink at the final component" if fmt != "c" else "a member is a symlink",
                 REFUSED, _through_symlink(fmt), rule_link, needs=needs),
            Case(4, reader, "-o /dev/full", REFUSED, _to_dev_full(fmt), rf"/dev/full.*({rule_regular}|folder)",
                 guard=True, needs=needs),
        ]  # fmt: skip
    cases += [
        Case(4, "export c", "the input named like a file of the folder", REFUSED, _c_input_as_member, rule_input),
        Case(4, "report -o", "-o onto its input", REFUSED, _report_output("input"), rule_input),
        Case(4, "report -o", "-o through a symlink at the final component", REFUSED, _report_output("symlink"),
             rule_link),
        Case(4, "report -o", "-o /dev/full", REFUSED, _report_output("dev-full"), rf"/dev/full.*{rule_regular}",
             guard=True),
        Case(4, "compress", "output folder holds the input named like a member", REFUSED,
             _compress_output("input-named-like-a-member"), rule_input),
        Case(4, "compress", "a member of the set is a symlink", REFUSED, _compress_output("member-symlink"), rule_link),
        Case(4, "compress", "-o /dev/full", REFUSED, _compress_output("dev-full"), r"/dev/full", guard=True),
        Case(4, "compress", "output beside its input (control)", OK, _compress_output("beside")),
    ]  # fmt: skip
    return cases


def _run_cases() -> list[Case]:
    return [
        Case(6, "train", "--batch-size 4096 on digits", REFUSED, _train_batch,
             r"batch size 4096 is larger than the 1294 images", quick=True),
        Case(6, "train", "--batch-size 1294, the whole split (control)", OK, lambda ws: _train_batch(ws, 1294)),
        Case(6, "compress", "--batch-size 4096 on digits", REFUSED, _compress_batch,
             r"batch size 4096 is larger than the 1294 images"),
        Case(6, "train --arch", "100,000-character layer name in the spec", REFUSED, _spec_long_layer_name,
             r"100000 characters, more than"),
        Case(6, "NIR import", "100,000-character model name", REFUSED,
             _nir_case("import", "ours", text(MODEL_NAME, "m" * 100_000)), r"albsnn_model", needs=("nir", "h5py")),
        Case(6, "NIR import", "100,000-character layer label", REFUSED,
             _nir_case("import", "ours", text(f"{OURS_CONV}/metadata/albsnn_layer", "c" * 100_000)),
             r"albsnn_layer", needs=("nir", "h5py")),
        Case(6, "NIR import", "100,000-character node name", REFUSED,
             _nir_case("import", "foreign", _foreign_node_renamed("l" * 100_000)), r"100000 characters",
             needs=("nir", "h5py")),
        Case(6, "NIR inspect", "100,000-character node name", INSPECT_EXPECTED["100,000-character node name"],
             _nir_case("inspect", "foreign", _foreign_node_renamed("l" * 100_000)), r"100000 characters",
             needs=("nir", "h5py")),
        Case(6, "NIR compress", "100,000-character model name", REFUSED,
             _nir_case("compress", "ours", text(MODEL_NAME, "m" * 100_000)), r"albsnn_model", needs=("nir", "h5py")),
    ]  # fmt: skip


def _text_cases() -> list[Case]:
    hostile_model = "net\x1b]0;owned\x07\u202e"
    cases = [
        Case(7, "inspect container", "metadata with ESC, C1 and bidi", OK, _inspect_hostile_container(False),
             r"\\x1b\]0;owned\\x07", quick=True),
        Case(7, "inspect container", "metadata with ESC, C1 and bidi (--json)", OK, _inspect_hostile_container(True)),
        Case(7, "eval", "container metadata with ESC and bidi", OK, _eval_hostile_container, r"accuracy"),
        *(Case(7, "report", f"names with ESC, C1, bidi and markup ({form})", OK, _report_case(form, _hostile_names))
          for form in ("terminal", "md", "html", "json")),
        Case(7, "report", "unreadable report named with OSC", REFUSED, _report_named("\x1b]0;owned\x07", True),
             r"bad\\x1b"),
        Case(7, "report", "missing report named with CSI and RLO", REFUSED, _report_named("\x9b2J\u202e", False),
             r"bad\\x9b2J\\u202e"),
        Case(7, "eval", "data folder named with CSI and RLO", REFUSED, _dataset_folder_named, r"data\\x1b\[2J"),
        Case(7, "compress", "checkpoint named with OSC and RLO", REFUSED, _checkpoint_named, r"model\\x1b"),
        Case(7, "NIR import", "model name with OSC and RLO", REFUSED,
             _nir_case("import", "ours", text(MODEL_NAME, hostile_model)), r"control char", needs=("nir", "h5py")),
        Case(7, "NIR inspect", "model name with OSC and RLO", OK,
             _nir_case("inspect", "ours", text(MODEL_NAME, hostile_model)), r"cannot be imported",
             needs=("nir", "h5py")),
        Case(7, "NIR import", "edge name with an escape sequence", REFUSED,
             _nir_case("import", "foreign", edges([("input", "co\x1bnv")])), r"control character",
             needs=("nir", "h5py")),
        Case(7, "NIR inspect", "edge name with an escape sequence",
             INSPECT_EXPECTED["edge name with an escape sequence"],
             _nir_case("inspect", "foreign", edges([("input", "co\x1bnv")])), r"control character",
             needs=("nir", "h5py")),
        Case(7, "NIR inspect", "unused metadata text with ESC, C1 and bidi", OK,
             _nir_case("inspect", "ours", text(f"{OURS_CONV}/metadata/note", "\x1b[2J\x9b31m\u202e\u2066 x")),
             r"yes, at T=4", needs=("nir", "h5py")),
        Case(7, "NIR import", "unused metadata text with ESC, C1 and bidi", OK,
             _nir_case("import", "ours", text(f"{OURS_CONV}/metadata/note", "\x1b[2J\x9b31m\u202e\u2066 x")),
             needs=("nir", "h5py")),
    ]  # fmt: skip
    return cases


def _c_set_cases() -> list[Case]:
    return [
        Case(8, "export c", "folder holding a foreign manifest.json", REFUSED, _c_foreign_manifest,
             r"manifest.json: not an albsnn-compress output manifest", quick=True),
        Case(8, "compress", "folder holding a foreign manifest.json", REFUSED, _compress_output("foreign-manifest"),
             r"manifest.json: not an albsnn-compress output manifest"),
    ]  # fmt: skip


CASES: list[Case] = [
    *_dataset_cases(),
    *_nir_size_cases(),
    *_report_cases(),
    *_output_cases(),
    *_nir_value_cases(),
    *_run_cases(),
    *_text_cases(),
    *_c_set_cases(),
]


# -- running ----------------------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``, nothing followed or opened but small regular files (sparse giants by size)."""
    seen: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                seen[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if info.st_size < (64 << 20) else None
                seen[path] = ("file", info.st_size, info.st_mtime_ns, info.st_ino, digest)
            else:
                seen[path] = (stat.S_IFMT(info.st_mode), info.st_ino)
    return seen


def _devices() -> dict[str, tuple[int, int, int]]:
    found = {}
    for device in ("/dev/full", "/dev/null"):
        try:
            info = os.lstat(device)
        except OSError:
            continue
        found[device] = (info.st_mode, info.st_rdev, info.st_ino)
    return found


def _missing(modules: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]


def _shown(text: str, tmp: str, limit: int = 1000) -> str:
    """Output for the record: the temporary folder written as ``<tmp>``, the tail kept, controls escaped."""
    text = text.replace(tmp, "<tmp>")
    text = text if len(text) <= limit else "..." + text[-limit:]
    return text.encode("unicode_escape", "backslashreplace").decode("ascii") if unsafe_characters(text) else text


def run_case(case: Case, ws: Workspace, case_dir: Path) -> dict[str, Any]:
    """Build ``case`` in ``case_dir``, run its command under the cap, judge it; the record of the run."""
    record: dict[str, Any] = {"class": case.klass, "reader": case.reader, "case": case.name,
                              "expected": case.expected}  # fmt: skip
    missing = _missing(case.needs)
    if missing:
        return {**record, "status": "skipped", "clean": None, "problems": [f"needs {', '.join(missing)}"]}
    case_dir.mkdir(parents=True)
    ws.dir = case_dir
    tmp = str(ws.root)
    try:
        argv = case.build(ws)
    except Exception as exc:  # noqa: BLE001 - a case that cannot be built is reported, not fatal
        return {**record, "status": "not built", "clean": False, "problems": [f"building: {type(exc).__name__}: {exc}"]}
    record["argv"] = [arg.replace(tmp, "<tmp>") for arg in argv]
    before, devices = _snapshot(case_dir), _devices()
    record_path = ws.root / "record.json"
    record_path.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "COLUMNS": "120",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}  # fmt: skip
    command = [sys.executable, "-c", _CHILD, str(record_path), json.dumps(argv), "1" if case.guard else "0",
               str(BUDGET_BYTES)]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=case_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    hang = False
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        hang = True
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    wall = time.perf_counter() - started
    stdout, stderr = out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "surrogateescape")
    measured = json.loads(record_path.read_text()) if record_path.exists() else {}
    problems = []
    if hang:
        problems.append(f"hang: still running after {TIMEOUT_S:.0f} s")
    elif not measured:
        problems.append(f"the child died (status {process.returncode}) before recording")
    code = measured.get("exit")
    if measured.get("escaped"):
        problems.append(f"escaped {measured['escaped']}")
    lines = stderr.splitlines()
    if case.expected == REFUSED and measured and not hang:
        if code != 2:
            problems.append(f"exit status {code}, not 2")
        if len(lines) != 1 or not lines[0].startswith("error:"):
            problems.append(f"stderr is {len(lines)} lines, not one 'error:' line")
        elif case.reason and not re.search(case.reason, lines[0]):
            problems.append(f"refused, but not for the reason the case is about (/{case.reason}/)")
        changed = _changes(before, _snapshot(case_dir), tmp)
        if changed:
            problems.append(f"the refusal changed the case folder: {changed}")
    if case.expected == OK and measured and not hang:
        if code != 0:
            problems.append(f"exit status {code}, not 0")
        elif case.reason and not re.search(case.reason, stdout):
            problems.append(f"stdout lacks /{case.reason}/")
    if "Traceback" in stdout + stderr:
        problems.append("a Traceback in the output")
    if "MemoryError" in stdout + stderr or "MemoryError" in str(measured.get("escaped")):
        problems.append("MemoryError")
    for stream, content in (("stdout", stdout), ("stderr", stderr)):
        bad = unsafe_characters(content)
        if bad:
            problems.append(f"raw control characters in {stream}: {', '.join(bad)}")
    if _devices() != devices:
        problems.append(f"a device node changed: {devices} -> {_devices()}")
    return {
        **record,
        "status": "hang" if hang else "ran",
        "clean": not problems,
        "problems": problems,
        "exit": code,
        "seconds": round(measured.get("seconds", wall), 3),
        "wall_seconds": round(wall, 3),
        "peak_added_bytes": measured.get("added"),
        "stdout": _shown(stdout, tmp),
        "stderr": _shown(stderr, tmp),
    }


def _changes(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]], tmp: str) -> list[str]:
    names = sorted(set(before) | set(after))
    return [name.replace(tmp, "<tmp>") for name in names if before.get(name) != after.get(name)][:5]


def _summaries(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Counts per class x reader (the printed table) and per class."""

    def summary(group: list[dict[str, Any]]) -> dict[str, Any]:
        ran = [r for r in group if r["status"] != "skipped"]
        peaks = [r["peak_added_bytes"] for r in ran if r.get("peak_added_bytes") is not None]
        seconds = [r["seconds"] for r in ran if r.get("seconds") is not None]
        refusals = [r for r in ran if r["expected"] == REFUSED]
        return {
            "cases": len(ran),
            "clean": sum(bool(r["clean"]) for r in ran),
            "refusals": len(refusals),
            "clean_refusals": sum(bool(r["clean"]) for r in refusals),
            "ok": len(ran) - len(refusals),
            "clean_ok": sum(bool(r["clean"]) for r in ran if r["expected"] == OK),
            "skipped": len(group) - len(ran),
            "peak_added_mib_max": round(max(peaks) / (1 << 20), 1) if peaks else None,
            "peak_added_mib_max_refused": round(
                max((r["peak_added_bytes"] for r in refusals if r.get("peak_added_bytes") is not None), default=0)
                / (1 << 20),
                1,
            )
            if refusals
            else None,
            "seconds_max": round(max(seconds), 2) if seconds else None,
        }

    rows, classes = [], {}
    for klass, title in CLASSES.items():
        group = [r for r in records if r["class"] == klass]
        if not group:
            continue
        readers = list(dict.fromkeys(r["reader"] for r in group))
        for reader in readers:
            rows.append({"class": klass, "reader": reader, **summary([r for r in group if r["reader"] == reader])})
        classes[str(klass)] = {"title": title, "readers": readers, **summary(group)}
    return rows, classes


def run_battery(quick: bool, only: str | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cases (``quick``: the subset marked quick; ``only``: those whose key matches the regex)."""
    cases = [c for c in CASES if (c.quick or not quick) and (only is None or re.search(only, c.key))]
    records = []
    with tempfile.TemporaryDirectory(prefix="albsnn-hostile-") as folder:
        ws = Workspace(Path(folder))
        for index, case in enumerate(cases):
            record = run_case(case, ws, Path(folder) / f"case{index:03d}")
            records.append(record)
            verdict = "clean" if record["clean"] else record["status"] if record["clean"] is None else "NOT CLEAN"
            peak = record.get("peak_added_bytes")
            shown = f"{peak / (1 << 20):7.1f} MiB" if peak is not None else "      - MiB"
            echo(f"[{index + 1:3d}/{len(cases)}] {verdict:9s} {shown} {record.get('seconds', 0):6.2f} s  {case.key}")
            for problem in record["problems"]:
                echo(f"            {problem}")
            shutil.rmtree(Path(folder) / f"case{index:03d}", ignore_errors=True)
    rows, classes = _summaries(records)
    ran = [r for r in records if r["status"] != "skipped"]
    return {
        "quick": quick,
        "only": only,
        "settings": {"budget_bytes": BUDGET_BYTES, "timeout_s": TIMEOUT_S, "torch_threads": 1},
        "clean": sum(bool(r["clean"]) for r in ran),
        "cases_run": len(ran),
        "all_clean": all(r["clean"] for r in ran),
        "classes": classes,
        "rows": rows,
        "cases": records,
    }


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 132))
    table = Table(title="hostile inputs: clean outcomes per class and reader (peak: resident memory added)")
    for column in ("class", "reader", "cases", "clean", "refusals clean", "peak MiB max", "seconds max"):
        table.add_column(column, justify="left" if column in ("class", "reader") else "right")
    for row in result["rows"]:
        peak = "-" if row["peak_added_mib_max"] is None else f"{row['peak_added_mib_max']:.1f}"
        seconds = "-" if row["seconds_max"] is None else f"{row['seconds_max']:.2f}"
        table.add_row(
            str(row["class"]),
            row["reader"],
            str(row["cases"]) + (f" (+{row['skipped']} skipped)" if row["skipped"] else ""),
            str(row["clean"]),
            f"{row['clean_refusals']}/{row['refusals']}",
            peak,
            seconds,
        )
    console.print(table)
    totals = Table(title="per class")
    for column in ("class", "cases", "clean", "refusals clean", "ok clean", "peak MiB max (refused)"):
        totals.add_column(column, justify="left" if column == "class" else "right")
    for klass, row in result["classes"].items():
        totals.add_row(
            f"{klass} {row['title']}",
            str(row["cases"]),
            str(row["clean"]),
            f"{row['clean_refusals']}/{row['refusals']}",
            f"{row['clean_ok']}/{row['ok']}",
            "-" if row["peak_added_mib_max_refused"] is None else f"{row['peak_added_mib_max_refused']:.1f}",
        )
    console.print(totals)
    console.print(f"{result['clean']} of {result['cases_run']} cases clean", markup=False)
    for record in result["cases"]:
        if record["clean"] is False:
            console.print(f"NOT CLEAN {record['class']}/{record['reader']}/{record['case']}", markup=False)
            for problem in record["problems"]:
                console.print(f"    {problem}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the battery, print the tables, write the result JSON; 1 if a case is not clean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one case per class (about a minute)")
    parser.add_argument("--only", default=None, help="run the cases whose class/reader/name matches this regex")
    parser.add_argument("--results", type=Path, default=None, help="folder for the result JSON (benchmarks/results)")
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        raise SystemExit("bench_hostile uses RLIMIT_AS, /proc/self/status and FIFOs: Linux only")
    from benchmarks.machine import RESULTS, write_result

    result = run_battery(args.quick, args.only)
    _print(result)
    name = RESULT_NAME + ("-quick" if args.quick else "") + ("-only" if args.only else "")
    path = write_result(
        name,
        result,
        args.results or RESULTS,
        module="benchmarks.bench_hostile",
        argv=sys.argv[1:] if argv is None else argv,
    )
    print(f"wrote {path}")
    return 0 if result["all_clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
