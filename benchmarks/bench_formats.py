"""Every format computes what PyTorch computes: one model with 1-, 2-, 4- and 8-bit layers, every runtime, every image.

The model is a trained checkpoint with a precision per layer applied by post-training
quantization (:func:`~albsnn_compress.precision.set_precision_`, as ``bench_precision``
does; default ``conv1=8,conv2=4,conv3=2,conv4=1,conv5=1,conv6=8``: every precision at
least once), its batch norms re-estimated on 20 training batches
(:func:`~albsnn_compress.search.finetune.recalibrate_batchnorm`) so that its accuracy is
sensible, or an ``.albsnn`` container as it is. It is written with the package's own
writers (container, packed ONNX, NIR, C) and run on the test split by:

* ``pytorch``: the model in memory, the reference (batches of 500 images);
* ``container``: the container read back with ``read_container``;
* ``onnxruntime``: the ONNX file, one intra-op thread;
* ``snntorch`` and ``spikingjelly``: the NIR file read by their importers (``formats/nir/check.py``);
* ``c``: the C export (kernels chosen on 256 training images, as ``export --format c``), built
  ``cc -std=c99 -O3`` with ``bench_c``'s harness, logits read back.

Per runtime: identical predictions, the largest logit difference, the images whose logits differ
by more than 1e-4, each traced to its first spike flip (a *tie* when our membrane, or the C
one, is within 1e-4 of the threshold there; :func:`~albsnn_compress.formats.nir.check.compare`
for every runtime that gives a :data:`~albsnn_compress.formats.nir.check.Runner`, the ONNX
graph's spikes read as extra outputs of an in-memory copy; ``bench_c``'s traced build for C), the
rest *unexplained*, and the test accuracy; the bytes of every file written and of the input.
``compare`` traces an image by running its batch again (SpikingJelly sums with PyTorch's
convolutions, whose order depends on the batch, so a tie may exist only there).
A runtime whose framework or compiler is missing is recorded as skipped, with the reason.

Why: the issue's acceptance test for k-bit layers. Every precision must mean the same
function in every format, not only in the container the search writes.

Run from the repository root::

    python -m benchmarks.bench_formats --data-root ../shared/datasets
    python -m benchmarks.bench_formats --quick     # a digits model trained for it, every digit, seconds

The full run (fmnist-vgg at T=1, the 10,000 FashionMNIST test images, one thread) takes about a
minute on a 2-core machine (snnTorch, which runs one image at a time, about 13 s of it); ``--quick``
about 10 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.registry import load_split, recorded_val_share
from albsnn_compress.errors import CompressionError, NirError
from albsnn_compress.formats.c.export import export_c
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.formats.nir.check import (
    Agreement,
    Run,
    Runner,
    compare,
    model_runner,
    snntorch_runner,
    spikingjelly_runner,
)
from albsnn_compress.formats.nir.optional import export_nir
from albsnn_compress.formats.onnx.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from albsnn_compress.precision import layer_bits, set_precision_
from albsnn_compress.search.finetune import recalibrate_batchnorm
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet
from benchmarks.bench_c import _BATCH, _compile, _ties
from benchmarks.machine import RESULTS, write_result
from benchmarks.provenance import ROOT, repo_relative
from benchmarks.quick import quick_defaults

__all__ = ["parse_bits", "onnx_runner", "measure", "markdown_table", "main"]

CHECKPOINT = ROOT / "benchmarks" / "checkpoints" / "fmnist-vgg-T1-aug40.pt"
DEFAULT_BITS = "conv1=8,conv2=4,conv3=2,conv4=1,conv5=1,conv6=8"  # fmnist-vgg: every precision at least once
QUICK_BITS = "conv1=8,conv2=4,conv3=2,conv4=1,conv5=8"  # digits-small
BN_BATCHES = 20
CALIBRATION_IMAGES = 256  # the training images export --format c chooses each layer's kernel on
TOLERANCE = 1e-4  # logits closer than this agree
TIE_TOLERANCE = 1e-4  # a first spike flip this close to the threshold is a tie
NIR_FRAMEWORKS: dict[str, Callable[[Path, int], Runner]] = {
    "snntorch": snntorch_runner,
    "spikingjelly": spikingjelly_runner,
}


def parse_bits(text: str) -> dict[str, int]:
    """``"conv1=8,conv2=4"`` -> ``{"layers.conv1": 8, "layers.conv2": 4}`` (short layer names, bits per weight).

    Raises:
        ValueError: an item is not ``NAME=BITS``.
    """
    bits = {}
    for item in text.split(","):
        name, equals, value = item.strip().partition("=")
        if not (equals and name and value.strip().isdigit()):
            raise ValueError(f"expected NAME=BITS items separated by commas, got {item!r}")
        bits[f"layers.{name.strip()}"] = int(value)
    return bits


def _short_bits(model: SpikingNet) -> dict[str, int]:
    """Bits per weight of every conv/linear layer, by short name (32: float)."""
    return {name.rsplit(".", 1)[-1]: bits for name, bits in layer_bits(model).items()}


def _quantize(model: SpikingNet, bits: dict[str, int], train: ImageSet, bn_batches: int) -> None:
    """Give the layers their precisions, then re-estimate batch norm on ``bn_batches`` training batches (0: keep)."""
    set_precision_(model, bits)
    if bn_batches:
        with torch.no_grad():
            recalibrate_batchnorm(model, train, batches=bn_batches)
    model.eval()


# -- writing every format --------------------------------------------------------------------------


def write_formats(model: SpikingNet, folder: Path, calibration: torch.Tensor, dataset: str) -> dict[str, Any]:
    """Write the container, the packed ONNX, the NIR file and the C folder into ``folder``.

    Returns their paths (``nir``: the reason instead where NIR cannot be written) and sizes in bytes.
    """
    paths: dict[str, Any] = {
        "container": folder / "model.albsnn",
        "onnx": folder / "model.onnx",
        "nir": folder / "model.nir",
        "c": folder / "model_c",
    }
    write_container(paths["container"], model, metadata={"dataset": dataset})
    export_onnx(model, paths["onnx"])
    try:
        export_nir(model, paths["nir"])
    except NirError as exc:
        paths["nir"] = str(exc)
    exported = export_c(model, paths["c"], calibration=calibration)
    c_files = {file.name: file.stat().st_size for file in sorted(paths["c"].iterdir())}
    sizes: dict[str, Any] = {
        name: path.stat().st_size for name, path in paths.items() if name != "c" and isinstance(path, Path)
    }
    sizes["c"] = {
        "files": c_files,
        "total": sum(c_files.values()),
        "weight_bytes": exported.weight_bytes,
        "arena_bytes": exported.arena_bytes,
    }
    return {"paths": paths, "bytes": sizes}


# -- running them ----------------------------------------------------------------------------------


def onnx_runner(path: Path, model: SpikingNet) -> Runner:
    """The ONNX file in onnxruntime (one intra-op thread) as a :data:`Runner`.

    ``record=True`` runs an in-memory copy of the graph whose outputs also name each LIF layer's spikes
    (``<layer>.y``, time-folded ``[T*B, ...]``, step-major), so ties are traced as for the other runtimes;
    the file itself and the logits compared are the plain graph's.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spikes = [f"{name}.y" for name, module in model.layers.named_children() if isinstance(module, LIF)]
    traced: list[ort.InferenceSession] = []  # built on the first record=True call

    def run(images: torch.Tensor, record: bool) -> Run:
        feed = {INPUT_NAME: images.numpy()}
        if not record:
            return Run(torch.from_numpy(plain.run([OUTPUT_NAME], feed)[0]))
        if not traced:
            graph = onnx.load(str(path))
            graph.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in spikes)
            traced.append(ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"]))
        logits, *fired = traced[0].run([OUTPUT_NAME, *spikes], feed)
        steps = [torch.from_numpy(s).reshape(model.timesteps, len(images), *s.shape[1:]) for s in fired]
        return Run(torch.from_numpy(logits), steps)

    return run


def _row(
    runtime: str, agreement: Agreement, logits: torch.Tensor, labels: torch.Tensor, seconds: float
) -> dict[str, Any]:
    """One runtime's record: the agreement, the images off by more than the tolerance, accuracy and seconds."""
    return {
        "runtime": runtime,
        "status": "ok",
        **agreement.to_dict(),
        "images_logits_off": len(agreement.ties) + len(agreement.unexplained),
        "ok": agreement.ok(),
        "accuracy": 100.0 * float((logits.argmax(dim=1) == labels).float().mean()),
        "seconds": seconds,
    }


def _skipped(runtime: str, reason: str) -> dict[str, Any]:
    return {"runtime": runtime, "status": "skipped", "reason": reason}


def _runner_row(
    runtime: str, model: SpikingNet, runner: Runner, images: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor
) -> dict[str, Any]:
    """Run ``runner`` on every image (batches as the reference's) and compare it with ``model``, ties traced."""
    started = time.perf_counter()
    logits = torch.cat([runner(batch, False).logits for batch in torch.split(images, _BATCH)])
    seconds = time.perf_counter() - started
    agreement = compare(
        model, runner, images, chunk=_BATCH, reference=reference, logits=logits, tol=TOLERANCE, tie_tol=TIE_TOLERANCE
    )
    return _row(runtime, agreement, logits, labels, seconds)


def _nir_row(
    runtime: str,
    nir: Path | str,
    model: SpikingNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    reference: torch.Tensor,
) -> dict[str, Any]:
    """The NIR file read by one framework; skipped where the file or the framework is missing."""
    if isinstance(nir, str):
        return _skipped(runtime, nir)
    try:
        runner = NIR_FRAMEWORKS[runtime](nir, model.timesteps)
    except ImportError as exc:
        return _skipped(runtime, f"{runtime} cannot be imported: {exc}")
    return _runner_row(runtime, model, runner, images, labels, reference)


def _c_row(
    model: SpikingNet, folder: Path, images: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor, work: Path
) -> dict[str, Any]:
    """The C export built with ``bench_c``'s harness; each image off is traced by ``bench_c``'s traced build."""
    if shutil.which("cc") is None:
        return _skipped("c", "no C compiler (cc) on PATH")
    started = time.perf_counter()
    binary = _compile(folder, ["-O3"], work / "model.bin")
    images.numpy().tofile(work / "images.f32")
    subprocess.run([str(binary), "logits", str(work / "images.f32"), str(work / "logits.f32")], check=True)
    logits = torch.from_numpy(np.fromfile(work / "logits.f32", dtype=np.float32).reshape(len(images), -1))
    seconds = time.perf_counter() - started
    diff = (logits - reference).abs().amax(dim=1)
    off = np.flatnonzero((diff > TOLERANCE).numpy())
    flips = _ties(model, folder, images, off, work) if len(off) else []
    ties = [flip for flip in flips if flip["layer"] is not None and flip["margin"] <= TIE_TOLERANCE]
    untied = diff.clone()
    untied[[tie["image"] for tie in ties]] = 0.0
    agreement = Agreement(
        images=len(images),
        identical_predictions=int((logits.argmax(dim=1) == reference.argmax(dim=1)).sum()),
        max_logit_diff=float(diff.max()),
        max_logit_diff_untied=float(untied.max()),
        ties=ties,
        unexplained=[flip["image"] for flip in flips if flip not in ties],
        tol=TOLERANCE,
        tie_tol=TIE_TOLERANCE,
    )
    return _row("c", agreement, logits, labels, seconds)


def measure(
    model: SpikingNet, images: torch.Tensor, labels: torch.Tensor, written: dict[str, Path | str], work: Path
) -> list[dict[str, Any]]:
    """One record per runtime, PyTorch first (the reference, in batches of ``bench_c``'s 500 images)."""
    started = time.perf_counter()
    ours = model_runner(model)
    reference = torch.cat([ours(batch, False).logits for batch in torch.split(images, _BATCH)])
    seconds = time.perf_counter() - started
    itself = Agreement(len(images), len(images), 0.0, 0.0, tol=TOLERANCE, tie_tol=TIE_TOLERANCE)
    rows = [_row("pytorch", itself, reference, labels, seconds)]
    container = model_runner(read_container(written["container"]).model)
    rows.append(_runner_row("container", model, container, images, labels, reference))
    rows.append(_runner_row("onnxruntime", model, onnx_runner(Path(written["onnx"]), model), images, labels, reference))
    rows += [_nir_row(name, written["nir"], model, images, labels, reference) for name in NIR_FRAMEWORKS]
    rows.append(_c_row(model, Path(written["c"]), images, labels, reference, work))
    return rows


# -- reporting -------------------------------------------------------------------------------------


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per runtime: agreement with PyTorch, logits off and how many of them are ties, accuracy."""
    lines = [
        "| runtime | images | identical predictions | max abs logit diff | logits off > 1e-4 | ties | unexplained "
        "| test accuracy, % | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['runtime']} | skipped: {row['reason']} | | | | | | | |")
            continue
        lines.append(
            f"| {row['runtime']} | {row['images']} | {row['identical_predictions']} "
            f"({100 * row['prediction_agreement']:.2f} %) | {row['max_logit_diff']:.3g} | {row['images_logits_off']} "
            f"| {len(row['ties'])} | {len(row['unexplained'])} | {row['accuracy']:.2f} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    """Versions of the runtimes not in ``machine.versions``, and the C compiler's first line."""
    found = {}
    for package in ("nir", "nirtorch", "snntorch", "spikingjelly"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    compiler = shutil.which("cc")
    found["cc"] = (
        subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if compiler
        else "not found"
    )
    return found


# -- the command line ------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[SpikingNet, str | None, float]:
    """The model, the dataset its metadata names and the validation share it was trained with."""
    if args.model is not None:
        container = read_container(args.model)
        return container.model, container.metadata.get("dataset"), recorded_val_share({})
    loaded = read_checkpoint(args.checkpoint)
    dataset = loaded.metadata.get("dataset")
    return loaded.build(), dataset if isinstance(dataset, str) else None, recorded_val_share(loaded.metadata)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, default=None, help=f"model.pt (default {repo_relative(str(CHECKPOINT))})"
    )
    source.add_argument("--model", type=Path, default=None, help=".albsnn container, run with its own precisions")
    parser.add_argument(
        "--bits",
        default=None,
        help=f"NAME=BITS per layer (default for a checkpoint {DEFAULT_BITS}; --quick {QUICK_BITS})",
    )
    parser.add_argument(
        "--bn-batches",
        type=int,
        default=None,
        help=f"training batches batch norm is re-estimated on, 0 keeps it (default {BN_BATCHES}; 0 for --model)",
    )
    parser.add_argument("--dataset", default=None, help="default: the one the model's metadata names")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--name", default=None, help="result name (default formats-<input stem>, formats-quick)")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON result")
    parser.add_argument("--quick", action="store_true", help="a digits-small model trained for it, every digit")
    return parser


def _resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill the defaults that depend on other options (``--quick`` trains its checkpoint here)."""
    if args.quick:
        if args.model is not None:
            parser.error("--quick trains its own model; leave out --model")
        args.cells = None
        quick_defaults(args)
        args.bits = args.bits or QUICK_BITS
        args.name = args.name or "formats-quick"
    if args.model is None:
        args.checkpoint = args.checkpoint or CHECKPOINT
        args.bits = args.bits or DEFAULT_BITS
    if args.bn_batches is None:
        args.bn_batches = 0 if args.model is not None else BN_BATCHES
    args.name = args.name or f"formats-{(args.model or args.checkpoint).stem}"


def main(argv: list[str] | None = None) -> None:
    """Apply the precisions, write every format, run every runtime on the test split, write ``NAME.json``."""
    parser = _parser()
    args = parser.parse_args(argv)
    _resolve(parser, args)
    try:
        bits = parse_bits(args.bits) if args.bits else {}
    except ValueError as exc:
        parser.error(f"--bits: {exc}")
    torch.set_num_threads(1)
    model, recorded, val_share = _load(args)
    dataset = args.dataset or recorded
    if dataset is None:
        parser.error("the model's metadata names no dataset: pass --dataset")
    train = load_split(dataset, args.data_root, "train", val_share)
    try:
        _quantize(model, bits, train, args.bn_batches)
    except CompressionError as exc:  # a layer the model lacks, bits no precision has
        parser.error(f"--bits: {exc}")
    test = load_split(dataset, args.data_root, "test")
    count = len(test) if args.limit is None else min(args.limit, len(test))
    images, labels = test.as_float()[:count], test.labels[:count].long()
    calibration = train.as_float(torch.arange(min(CALIBRATION_IMAGES, len(train))))
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as folder:
        written = write_formats(model, Path(folder), calibration, dataset)
        rows = measure(model, images, labels, written["paths"], Path(folder))
    source = args.model or args.checkpoint
    payload = {
        "input": {"path": repo_relative(str(source)), "bytes": source.stat().st_size},
        "dataset": dataset,
        "images": count,
        "timesteps": model.timesteps,
        "bits": _short_bits(model),
        "bn_batches": args.bn_batches,
        "files_bytes": written["bytes"],
        "tolerance": TOLERANCE,
        "tie_tolerance": TIE_TOLERANCE,
        "runtimes": rows,
        "versions": _versions(),
    }
    path = write_result(args.name, payload, args.results or RESULTS, module="benchmarks.bench_formats", argv=argv)
    print(markdown_table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
