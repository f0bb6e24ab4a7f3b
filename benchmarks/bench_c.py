"""The C export against onnxruntime: batch-1 latency, flash and RAM, and agreement with PyTorch.

Run from the repository root::

    python -m benchmarks.bench_c                   # fmnist-vgg, every candidate binarized (a few minutes)
    python -m benchmarks.bench_c --label budget-1.0 \
        --container benchmarks/checkpoints/fmnist-vgg-T1-albsnn/fmnist-vgg-T1.albsnn
    python -m benchmarks.bench_c --quick           # digits-small trained for one epoch, seconds
    python -m benchmarks.bench_c --crossover       # dense against event kernels by input density (one layer)

The default model is the committed checkpoint ``benchmarks/checkpoints/fmnist-vgg-T1.pt``
with every candidate layer binarized by ``binarize_`` and no finetuning: latency and
memory do not depend on the weights' values, and agreement compares two
implementations of the same model (its accuracy is not the point; a compressed
container can be passed with ``--container``). Variants, each measured in a fresh
process, in interleaved rounds (``--rounds``), medians over rounds:

* ``c-packed``: what ``export --format c`` writes (1-bit weights; each layer over spikes runs the kernel
  ``plan_model(calibration=...)`` picks by its input density measured on the first 256 training images,
  ``--kernels auto``: here ``albsnn_conv_bit_events`` and ``albsnn_conv_events`` everywhere),
  ``cc -std=c99 -O3``;
* ``c-packed-native``: the same with ``-march=native``;
* ``c-dense``: the same model with ``kernels="dense"`` (AND + popcount and the dense float kernel over
  every input element), ``-O3``: what the event kernels replace;
* ``c-float`` / ``c-float-native``: the same C code exported with ``weights="float"``;
* ``ort-packed``: onnxruntime on the packed ONNX, 1 intra-op thread, default optimizations.

It also records each conv/linear layer's input density (the fraction of non-zero inputs, measured
on 256 test images with ``input_densities``), the kernel exported (chosen on the training images) and
the one the test images would pick.

Latency is per image at batch 1, cycling over 64 test images, after 20 warm-up runs:
the median of the per-run times (wall clock; the C harness also reports process CPU
time). Memory: the C export's ``ALBSNN_WEIGHT_BYTES`` (const, flash) and
``ALBSNN_ARENA_BYTES`` (static RAM), ``size`` of its object files (text includes the
const arrays, bss is the arena); onnxruntime's peak resident memory after session
creation and the runs, minus the process's size before (the bench_inference method).
Agreement: the C logits of every test image against PyTorch's; every image whose logits
differ by more than 1e-4 (relative to the largest logit) is run again through a traced build
and its first differing spike located (``albsnn_compress/formats/c/trace.py``): a tie when that neuron's
membrane is within 1e-4 of the threshold. Ratios are given on the wall clock and on the
process CPU clock (on a shared machine the CPU clock is the steadier one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run_benchmark", "VARIANTS"]

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "benchmarks" / "checkpoints" / "fmnist-vgg-T1.pt"
VARIANTS = ("c-packed", "c-packed-native", "c-dense", "c-float", "c-float-native", "ort-packed")
_C_FLAGS = {
    "c-packed": ["-O3"],
    "c-packed-native": ["-O3", "-march=native"],
    "c-dense": ["-O3"],
    "c-float": ["-O3"],
    "c-float-native": ["-O3", "-march=native"],
}
_EXPORTS = ("packed", "dense", "float")  # the folders c-<name>: (weights, kernels) below
_EXPORT_MODES = {"packed": ("packed", "auto"), "dense": ("packed", "dense"), "float": ("float", "auto")}
_CALIBRATION_IMAGES = 256
_TIMED_IMAGES = 64
_TOLERANCE = 1e-4
_BATCH = 500  # PyTorch reference batch size
_TIE_MARGIN = 1e-4  # a flipped spike this close to the threshold is a tie (albsnn_compress/formats/c/trace.py)

# ``harness time IMAGES SECONDS`` prints JSON latencies; ``harness logits IMAGES OUT [TRACE]`` writes float32
# logits (and, built with -DALBSNN_TRACE and TRACE_HOOK_C, every neuron's trace record).
_HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "albsnn_model.h"

#ifdef ALBSNN_TRACE
extern FILE *albsnn_trace_file;
#endif

#define N_IN (ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W)
#define MAX_RUNS 100000

static float pixels[64][N_IN];
static double wall[MAX_RUNS], cpu[MAX_RUNS];

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    float logits[ALBSNN_NUM_CLASSES];
    FILE *in;
    int n = 0, runs = 0, i;
    if (argc < 4 || (in = fopen(argv[2], "rb")) == NULL) return 2;
    if (strcmp(argv[1], "logits") == 0) {
        FILE *out = fopen(argv[3], "wb");
        if (out == NULL) return 2;
#ifdef ALBSNN_TRACE
        if (argc < 5 || (albsnn_trace_file = fopen(argv[4], "wb")) == NULL) return 2;
#endif
        while (fread(pixels[0], sizeof(float), N_IN, in) == N_IN) {
            if (albsnn_infer(pixels[0], logits) != ALBSNN_OK) return 3;
            fwrite(logits, sizeof(float), ALBSNN_NUM_CLASSES, out);
        }
        return fclose(out);
    } else {
        const double budget = atof(argv[3]);
        double start, w, c;
        while (n < 64 && fread(pixels[n], sizeof(float), N_IN, in) == N_IN) ++n;
        if (n == 0) return 2;
        for (i = 0; i < 20; ++i) {
            if (albsnn_infer(pixels[i % n], logits) != ALBSNN_OK) return 3;
        }
        start = seconds(CLOCK_MONOTONIC);
        while (runs < MAX_RUNS && (runs < 20 || seconds(CLOCK_MONOTONIC) - start < budget)) {
            int status;
            w = seconds(CLOCK_MONOTONIC);
            c = seconds(CLOCK_PROCESS_CPUTIME_ID);
            status = albsnn_infer(pixels[runs % n], logits);
            cpu[runs] = seconds(CLOCK_PROCESS_CPUTIME_ID) - c;
            wall[runs] = seconds(CLOCK_MONOTONIC) - w;
            if (status != ALBSNN_OK) return 3;
            ++runs;
        }
        qsort(wall, (size_t)runs, sizeof(double), by_value);
        qsort(cpu, (size_t)runs, sizeof(double), by_value);
        printf("{\"median_ms\": %.6f, \"p10_ms\": %.6f, \"p90_ms\": %.6f, \"cpu_median_ms\": %.6f, \"runs\": %d}\n",
               1e3 * wall[runs / 2], 1e3 * wall[runs / 10], 1e3 * wall[runs * 9 / 10], 1e3 * cpu[runs / 2], runs);
    }
    return 0;
}
"""


# -- onnxruntime, in a worker process of its own -------------------------------------------------


def _peak_rss_kib() -> int:
    """Peak resident set of this process in KiB (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _ort_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Time the packed ONNX at batch 1 with one thread; memory is the peak RSS growth from session creation on."""
    import onnxruntime as ort  # only here: the parent's imports must not count

    images = np.fromfile(job["images"], dtype=np.float32).reshape(-1, 1, *job["shape"])[:_TIMED_IMAGES]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        Path("/proc/self/clear_refs").write_text("5")  # restart the peak at the current size
    except OSError:
        pass
    base = _peak_rss_kib()
    session = ort.InferenceSession(job["onnx"], options, providers=["CPUExecutionProvider"])
    for i in range(20):
        session.run(["logits"], {"images": images[i % len(images)][None]})
    times, cpu, start = [], [], time.perf_counter()
    while len(times) < 20 or time.perf_counter() - start < job["seconds"]:
        feed = {"images": images[len(times) % len(images)][None]}
        wall0, cpu0 = time.perf_counter(), time.process_time()
        session.run(["logits"], feed)
        cpu.append(time.process_time() - cpu0)
        times.append(time.perf_counter() - wall0)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "cpu_median_ms": 1e3 * statistics.median(cpu),
        "runs": len(times),
        "resident_bytes": 1024 * (_peak_rss_kib() - base),
    }


# -- building and running the C --------------------------------------------------------------------


def _compile(folder: Path, flags: list[str], output: Path) -> Path:
    from albsnn_compress.formats.c.trace import TRACE_HOOK_C  # imports torch: not at module level (the ORT worker)

    harness = folder.parent / "bench_harness.c"
    harness.write_text(_HARNESS)
    sources = [str(harness), str(folder / "albsnn_model.c"), str(folder / "albsnn_kernels.c")]
    if "-DALBSNN_TRACE" in flags:
        (folder.parent / "trace_hook.c").write_text(TRACE_HOOK_C)
        sources.append(str(folder.parent / "trace_hook.c"))
    subprocess.run(["cc", "-std=c99", *flags, "-I", str(folder), *sources, "-o", str(output)], check=True)
    return output


def _ties(model: Any, folder: Path, images: Any, rows: np.ndarray, work: Path) -> list[dict[str, Any]]:
    """For each image whose logits are off: where its spikes first differ from PyTorch, how far from the threshold."""
    from albsnn_compress.formats.c.trace import first_flip

    binary = _compile(folder, ["-O2", "-DALBSNN_TRACE"], work / "traced.bin")
    flips = []
    for row in rows:
        images[row : row + 1].numpy().tofile(work / "one.f32")
        subprocess.run(
            [str(binary), "logits", str(work / "one.f32"), str(work / "one.out"), str(work / "trace.bin")], check=True
        )
        start = row - row % _BATCH  # the reference's batch: PyTorch may sum a conv in another order in another batch
        flip = first_flip(
            model,
            images[row],
            (work / "trace.bin").read_bytes(),
            batch=images[start : start + _BATCH],
            row=int(row - start),
        )
        flips.append({"image": int(row), **({"layer": None} if flip is None else vars(flip))})
    return flips


def _object_sizes(folder: Path, flags: list[str]) -> dict[str, int]:
    """``size`` (Berkeley) of the folder's two object files: text (code and const data), data, bss."""
    objects = []
    for name in ("albsnn_model", "albsnn_kernels"):
        target = folder / f"{name}.o"
        subprocess.run(["cc", "-std=c99", *flags, "-c", str(folder / f"{name}.c"), "-o", str(target)], check=True)
        objects.append(str(target))
    lines = subprocess.run(["size", *objects], check=True, capture_output=True, text=True).stdout.splitlines()[1:]
    totals = np.sum([[int(v) for v in line.split()[:3]] for line in lines], axis=0)
    return {"text": int(totals[0]), "data": int(totals[1]), "bss": int(totals[2])}


def _measure(variant: str, binaries: dict[str, Path], work: Path, seconds: float) -> dict[str, Any]:
    if variant.startswith("c-"):
        done = subprocess.run(
            [str(binaries[variant]), "time", str(work / "timed.f32"), str(seconds)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(done.stdout)
    job = {
        "onnx": str(work / "packed.onnx"),
        "images": str(work / "timed.f32"),
        "shape": json.loads((work / "shape.json").read_text()),
        "seconds": seconds,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_c", "--worker", json.dumps(job)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    tolerance = _TOLERANCE * max(1.0, float(np.abs(reference).max()))
    diff = np.abs(logits - reference).max(axis=1)
    return {
        "off_rows": np.flatnonzero(diff > tolerance),
        "images": int(len(labels)),
        "identical_predictions": float((logits.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_logit_diff": float(diff.max()),
        "images_logits_off": int((diff > tolerance).sum()),
        "tolerance": tolerance,
        "accuracy_c": float((logits.argmax(1) == labels).mean()),
        "accuracy_pytorch": float((reference.argmax(1) == labels).mean()),
    }


def _load_model(args: argparse.Namespace) -> tuple[Any, str, str]:
    """The model, its dataset name and a description of where it came from."""
    from albsnn_compress.binarize import binarize_, candidate_layers
    from albsnn_compress.checkpoint import load_checkpoint
    from albsnn_compress.formats.container.file import read_container

    if args.quick:
        from albsnn_compress.training.train_model import TrainRequest, train_model
        from albsnn_compress.training.trainer import TrainConfig

        model = train_model(TrainRequest(config=TrainConfig(epochs=1, seed=0))).model
        binarize_(model, candidate_layers(model))
        return model.eval(), "digits", "digits-small trained for 1 epoch, every candidate binarized (no finetuning)"
    if args.container is not None:
        container = read_container(args.container)
        return container.model, container.metadata.get("dataset", "fashion-mnist"), f"container {args.container.name}"
    model = load_checkpoint(args.checkpoint)
    binarize_(model, candidate_layers(model))
    return (
        model,
        "fashion-mnist",
        f"checkpoint {args.checkpoint.name}, every candidate binarized by binarize_ (no finetuning)",
    )


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Export, build, measure and compare; returns the result payload."""
    import torch

    from albsnn_compress.binarize import binarized_layers
    from albsnn_compress.data import load_split
    from albsnn_compress.formats.c.export import CExport
    from albsnn_compress.formats.c.ops import ConvOp
    from albsnn_compress.formats.c.plan import input_densities, plan_model
    from albsnn_compress.formats.c.source import render_files
    from albsnn_compress.formats.onnx.export import export_onnx

    torch.set_num_threads(1)
    model, dataset, source = _load_model(args)
    test = load_split(dataset, None if dataset == "digits" else args.data_root, "test")
    images, labels = test.as_float(), test.labels.numpy()
    work = Path(tempfile.mkdtemp(prefix="bench-c-"))
    try:
        images.numpy().tofile(work / "all.f32")
        images[:_TIMED_IMAGES].numpy().tofile(work / "timed.f32")
        (work / "shape.json").write_text(json.dumps(list(images.shape[2:])))
        train = load_split(dataset, None if dataset == "digits" else args.data_root, "train")
        exported_on = train.as_float(torch.arange(min(_CALIBRATION_IMAGES, len(train))))  # as export --format c
        exports = {}
        for name in _EXPORTS:
            weights, kernels = _EXPORT_MODES[name]
            plan = plan_model(model, weights=weights, kernels=kernels, calibration=exported_on)
            (work / f"c-{name}").mkdir()
            for file, text in render_files(model, plan, weights).items():
                (work / f"c-{name}" / file).write_text(text)
            exports[name] = CExport({}, plan.weight_bytes, plan.arena_bytes)
        calibration = images[:_CALIBRATION_IMAGES]
        densities = input_densities(model, calibration)
        chosen = plan_model(model, calibration=calibration)
        layers = {
            op.label: {
                "input": op.inp.describe(),
                "density": densities.get(op.label.split(" ")[0]),
                "kernel_exported": next(
                    o.function for o in plan_model(model, calibration=exported_on).ops if o.label == op.label
                ),
                "kernel_with_calibration": op.function,
            }
            for op in chosen.ops
            if isinstance(op, ConvOp)
        }
        export_onnx(model, work / "packed.onnx")
        binaries = {
            v: _compile(work / f"c-{v.split('-')[1]}", flags, work / f"{v}.bin") for v, flags in _C_FLAGS.items()
        }
        sizes = {weights: _object_sizes(work / f"c-{weights}", ["-O3"]) for weights in exports}

        with torch.inference_mode():
            reference = torch.cat([model(batch) for batch in images.split(_BATCH)]).numpy()
        agreement = {}
        for weights in exports:
            subprocess.run(
                [str(binaries[f"c-{weights}"]), "logits", str(work / "all.f32"), str(work / f"{weights}.f32")],
                check=True,
            )
            logits = np.fromfile(work / f"{weights}.f32", dtype=np.float32).reshape(len(labels), -1)
            row = _agreement(logits, reference, labels)
            flips = _ties(model, work / f"c-{weights}", images, row.pop("off_rows"), work)
            row["off_images_first_flip"] = flips
            row["off_images_all_ties"] = all(f["layer"] is not None and f["margin"] <= _TIE_MARGIN for f in flips)
            agreement[f"c-{weights}"] = row

        load_before = os.getloadavg()
        rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                rounds[variant].append(_measure(variant, binaries, work, args.seconds))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    latency = {
        v: {key: statistics.median(r[key] for r in runs) for key in ("median_ms", "p10_ms", "p90_ms", "cpu_median_ms")}
        | {"rounds_median_ms": [r["median_ms"] for r in runs]}
        for v, runs in rounds.items()
    }
    ort_bytes = int(statistics.median(r["resident_bytes"] for r in rounds["ort-packed"]))
    ms = {v: latency[v]["median_ms"] for v in VARIANTS}
    cpu = {v: latency[v]["cpu_median_ms"] for v in VARIANTS}
    return {
        "model": {
            "source": source,
            "dataset": dataset,
            "arch": model.spec["name"],
            "timesteps": model.timesteps,
            "binarized": binarized_layers(model),
        },
        "latency": latency,
        "ratios": {
            clock: {
                "c_packed_over_ort": t["c-packed"] / t["ort-packed"],
                "c_packed_native_over_ort": t["c-packed-native"] / t["ort-packed"],
                "c_dense_over_ort": t["c-dense"] / t["ort-packed"],
                "c_packed_over_c_dense": t["c-packed"] / t["c-dense"],
                "c_packed_over_c_float": t["c-packed"] / t["c-float"],
                "c_packed_native_over_c_float_native": t["c-packed-native"] / t["c-float-native"],
            }
            for clock, t in (("wall", ms), ("cpu", cpu))
        },
        "memory": {
            "c_packed": {
                "weight_bytes": exports["packed"].weight_bytes,
                "arena_bytes": exports["packed"].arena_bytes,
                "size_O3": sizes["packed"],
            },
            "c_dense": {
                "weight_bytes": exports["dense"].weight_bytes,
                "arena_bytes": exports["dense"].arena_bytes,
                "size_O3": sizes["dense"],
            },
            "c_float": {
                "weight_bytes": exports["float"].weight_bytes,
                "arena_bytes": exports["float"].arena_bytes,
                "size_O3": sizes["float"],
            },
            "ort_packed_resident_bytes": ort_bytes,
        },
        "agreement": agreement,
        "layers": layers,
        "settings": {
            "rounds": args.rounds,
            "seconds_per_measurement": args.seconds,
            "timed_images": _TIMED_IMAGES,
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            "compiler": subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        },
    }


# -- dense against event kernels by density: one layer, random spikes -------------------------------------

CROSSOVER_DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
_CROSSOVER_LAYER = {"channels": 64, "size": 14, "kernel": 3}  # conv4 of fmnist-vgg: 64 -> 64, 3x3, 14x14

_CROSSOVER_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "albsnn_kernels.h"

static union { uint64_t u64[1 << 16]; int32_t i32[1 << 16]; float f[1 << 16]; uint32_t u32[1 << 16]; } mem;

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    static uint32_t input[1 << 14];
    const double budget = atof(argv[2]);
    FILE *f = fopen(argv[1], "rb");
    size_t words = fread(input, sizeof input[0], sizeof input / sizeof input[0], f);
    int calls = 0, status = 0;
    double start;
    (void)words;
    for (start = seconds(); seconds() - start < budget; ++calls) {
        status |= CALL;
    }
    printf("%.3f\n", 1e6 * (seconds() - start) / calls);
    return status != 0;
}
"""


def _crossover_calls(op: Any) -> str:
    """The kernel call of ``op`` on the harness's ``input`` with scratch from ``mem`` (output after it)."""
    y = "mem.u32 + 60000" if op.out.is_bits else "mem.f + 60000"
    if op.function in ("albsnn_conv_bits", "albsnn_conv_bit_events"):
        counts = f"mem.i32 + 50000, {op.scratch_counts}u"
        return f"{op.function}(&{op.ident}, input, {y}, mem.u64, {op.scratch_words}u, {counts})"
    if op.function == "albsnn_conv_events":
        return (
            f"{op.function}(&{op.ident}, input, {y}, mem.u64, {op.scratch_words}u, mem.f + 40000, {op.scratch_floats}u)"
        )
    return f"{op.function}(&{op.ident}, input, {y}, mem.f, {op.scratch_floats}u)"


def run_crossover(seconds: float) -> dict[str, Any]:
    """Per-call time of the dense and the event kernel of one layer (1-bit and float weights) over random spike
    maps of each density in CROSSOVER_DENSITIES, ``-O3`` and ``-O3 -march=native``: where events stop paying."""
    from albsnn_compress.formats.bitpack import pack_signs
    from albsnn_compress.formats.c.ops import ConvOp, CTensor, LifParams
    from albsnn_compress.formats.c.source import KERNELS_C, KERNELS_H, template
    from albsnn_compress.formats.c.text import render_array

    channels, size, kernel = (_CROSSOVER_LAYER[key] for key in ("channels", "size", "kernel"))
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, channels, kernel, kernel)).astype(np.float32)
    lif = LifParams((2.0,), (1.0,), 0.0, "ALBSNN_RESET_HARD", "hard", 0)
    spikes = CTensor(channels, size, size, 1, planes=1)
    work = Path(tempfile.mkdtemp(prefix="bench-c-crossover-"))
    result: dict[str, Any] = {"layer": dict(_CROSSOVER_LAYER), "densities": list(CROSSOVER_DENSITIES)}
    try:
        (work / KERNELS_C).write_text(template(KERNELS_C))
        (work / KERNELS_H).write_text(template(KERNELS_H))
        for kind in ("bits", "float"):
            scale = np.full(channels, 1.0 / (kernel * np.sqrt(channels)))
            bias = np.zeros(channels)
            bits, floats = (pack_signs(weight), None) if kind == "bits" else (None, weight)
            ops = {}
            for variant in ("dense", "events"):
                op = ConvOp(
                    f"l_{variant}", kind, spikes, spikes, kernel, 1, kernel // 2, 1, bits, floats, scale, bias, lif
                )
                op.choose(variant)
                ops[variant] = op
            for flags in (["-O3"], ["-O3", "-march=native"]):
                times: dict[str, list[float]] = {variant: [] for variant in ops}
                for variant, op in ops.items():
                    source = '#define _POSIX_C_SOURCE 199309L\n#include "albsnn_kernels.h"\n'
                    source += "".join(render_array(a) for a in op.arrays())
                    source += op.declarations() + _CROSSOVER_MAIN.replace("CALL", _crossover_calls(op))
                    (work / "main.c").write_text(source)
                    binary = work / f"{kind}-{variant}.bin"
                    subprocess.run(
                        [
                            "cc",
                            "-std=c99",
                            *flags,
                            "-I",
                            str(work),
                            str(work / "main.c"),
                            str(work / KERNELS_C),
                            "-o",
                            str(binary),
                        ],
                        check=True,
                    )
                    for density in CROSSOVER_DENSITIES:
                        plane = (rng.random(channels * size * size) < density).astype(np.uint8)
                        words = np.packbits(np.concatenate([plane, np.zeros(-len(plane) % 32, np.uint8)]))
                        words.view(">u4").astype(np.uint32).tofile(work / "input.u32")
                        done = subprocess.run(
                            [str(binary), str(work / "input.u32"), str(seconds)],
                            check=True,
                            capture_output=True,
                            text=True,
                        )
                        times[variant].append(float(done.stdout))
                crossing = next(
                    (d for d, e, t in zip(CROSSOVER_DENSITIES, times["events"], times["dense"]) if e > t), None
                )
                result[f"{kind} {' '.join(flags)}"] = {
                    "dense_us": times["dense"],
                    "events_us": times["events"],
                    "first_density_where_dense_wins": crossing,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _print(result: dict[str, Any]) -> None:
    model = result["model"]
    print(f"{model['source']}: T={model['timesteps']}, binarized {', '.join(model['binarized'])}")
    print(f"{'variant':18s} {'median ms':>10s} {'p10':>8s} {'p90':>8s} {'cpu ms':>8s}")
    for variant, row in result["latency"].items():
        print(
            f"{variant:18s} {row['median_ms']:10.3f} {row['p10_ms']:8.3f} {row['p90_ms']:8.3f} "
            f"{row['cpu_median_ms']:8.3f}"
        )
    for clock, ratios in result["ratios"].items():
        print(f"ratios ({clock} clock):", ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    memory = result["memory"]
    for name, layer in result["layers"].items():
        density = "-" if layer["density"] is None else f"{layer['density']:.3f}"
        kernels = f"{layer['kernel_exported']} (the test images would pick {layer['kernel_with_calibration']})"
        print(f"{name}: {layer['input']}, density {density}, {kernels}")
    for key in ("c_packed", "c_dense", "c_float"):
        sizes = memory[key]
        print(f"{key}: {sizes['weight_bytes']} B const, {sizes['arena_bytes']} B arena, size -O3 {sizes['size_O3']}")
    print(f"ort-packed: {memory['ort_packed_resident_bytes']} B resident growth")
    for key, row in result["agreement"].items():
        print(
            f"{key}: {row['identical_predictions']:.4%} identical predictions, "
            f"max |dlogit| {row['max_abs_logit_diff']:.2e}, "
            f"{row['images_logits_off']} images off by > {row['tolerance']:.0e} "
            f"(all ties: {row['off_images_all_ties']}), "
            f"accuracy C {row['accuracy_c']:.4f} / PyTorch {row['accuracy_pytorch']:.4f}"
        )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print and write ``benchmarks/results/c-<model>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="digits-small trained for one epoch, short timings (seconds)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=CHECKPOINT, help="checkpoint whose candidates are all binarized"
    )
    parser.add_argument("--container", type=Path, default=None, help="a compressed .albsnn to measure instead")
    parser.add_argument(
        "--label", default=None, help="result name suffix (default: fmnist-vgg-all, or the container's stem)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared" / "datasets", help="folder with FashionMNIST/"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved measurement rounds (default 5, quick 1)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement (default 3, quick 0.3)")
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/c-<label>.json)"
    )
    parser.add_argument(
        "--crossover", action="store_true", help="time dense against event kernels by input density (one layer)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_ort_worker(json.loads(args.worker))))
        return
    if shutil.which("cc") is None:
        sys.exit("bench_c: no C compiler (cc) on PATH")
    if args.crossover:
        from benchmarks.machine import RESULTS, write_result

        crossover = run_crossover(args.seconds or 0.5)
        for key, row in crossover.items():
            if isinstance(row, dict) and "dense_us" in row:
                print(f"{key}: density " + ", ".join(f"{d}" for d in CROSSOVER_DENSITIES))
                print(f"  dense  us: {', '.join(f'{t:.1f}' for t in row['dense_us'])}")
                print(f"  events us: {', '.join(f'{t:.1f}' for t in row['events_us'])}")
                print(f"  dense wins from density {row['first_density_where_dense_wins']}")
        output = args.output or RESULTS / "c-crossover.json"
        path = write_result(output.stem, crossover, output.parent, module="benchmarks.bench_c", argv=argv)
        print(f"wrote {path}")
        return
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.seconds = args.seconds or (0.3 if args.quick else 3.0)
    from benchmarks.machine import RESULTS, write_result

    label = args.label or ("quick" if args.quick else args.container.stem if args.container else "fmnist-vgg-all")
    output = args.output or (RESULTS / "quick" if args.quick else RESULTS) / f"c-{label}.json"
    result = run_benchmark(args)
    _print(result)
    path = write_result(output.stem, result, output.parent, module="benchmarks.bench_c", argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
