"""Build the C export for a Cortex-M4 and run it in QEMU (mps2-an386) on 100 FashionMNIST test images.

Run from the repository root (needs ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` and
``qemu-system-arm``: ``apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm``)::

    python -m benchmarks.cortex_m.run                       # fmnist-vgg, every candidate binarized
    python -m benchmarks.cortex_m.run --container m.albsnn  # a compressed container instead

Steps: export the model (``export_c``, 1-bit weights packed), write the first ``--images``
test images as a ``uint8_t`` C array, compile the exported folder, ``main.c``, ``startup.c``
and ``mps2_an386.ld`` with ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard
-mfpu=fpv4-sp-d16 -Os`` against newlib with semihosting (``--specs=rdimon.specs``), run the
ELF in ``qemu-system-arm -M mps2-an386 -nographic -semihosting``, read the logits it prints
(the float32 bits in hex) and compare them with PyTorch's. Prints ``arm-none-eabi-size`` of
the firmware and of the model's two object files, and writes
``benchmarks/results/c-cortex-m4.json``. QEMU is not cycle-accurate: this checks that the
code builds, fits and computes the same spikes on the target's FPU. With ``-icount`` the
firmware's SysTick counts guest instructions (calibrated by a loop of known length), which
the result records per inference: an instruction count, not a cycle count.
Without the toolchain it says what is missing and exits 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "TOOLS", "CFLAGS"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
CFLAGS = [
    "-std=c99",
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfloat-abi=hard",
    "-mfpu=fpv4-sp-d16",
    "-Os",
    "-ffp-contract=off",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
]
LDFLAGS = ["--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections", f"-T{HERE / 'mps2_an386.ld'}"]
# -icount: the virtual clock advances a fixed time per guest instruction, so SysTick counts instructions
QEMU = [
    "qemu-system-arm",
    "-M",
    "mps2-an386",
    "-nographic",
    "-semihosting-config",
    "enable=on,target=native",
    "-icount",
    "shift=0,align=off,sleep=off",
    "-kernel",
]


def _images_header(pixels: np.ndarray) -> str:
    """``images.h``: the test images as ``uint8_t bench_pixels[N][C*H*W]`` (flash), pixel values 0..255."""
    rows = ",\n".join("    {" + ", ".join(str(v) for v in image) + "}" for image in pixels.reshape(len(pixels), -1))
    return (
        "/* images.h: FashionMNIST test images for the Cortex-M run, written by benchmarks/cortex_m/run.py. */\n"
        "#include <stdint.h>\n"
        f"#define BENCH_IMAGES {len(pixels)}u\n#define BENCH_PIXELS {pixels[0].size}u\n"
        f"static const uint8_t bench_pixels[{len(pixels)}][{pixels[0].size}] = {{\n{rows}\n}};\n"
    )


def _size(paths: list[Path]) -> list[dict[str, Any]]:
    """``arm-none-eabi-size`` (Berkeley) rows: text, data, bss per file."""
    done = subprocess.run(["arm-none-eabi-size", *map(str, paths)], check=True, capture_output=True, text=True)
    print(done.stdout.rstrip())
    rows = []
    for line in done.stdout.splitlines()[1:]:
        text, data, bss, *_ = line.split()
        rows.append({"file": Path(line.split()[-1]).name, "text": int(text), "data": int(data), "bss": int(bss)})
    return rows


def _instructions(output: str) -> list[float]:
    """Instructions per inference: SysTick ticks times the calibration loop's instructions per tick."""
    words = next(line.split() for line in output.splitlines() if line.startswith("calibration "))
    per_tick = int(words[1]) / int(words[3])
    return [per_tick * int(line.split()[2]) for line in output.splitlines() if line.startswith("ticks ")]


def _parse_logits(output: str, count: int, classes: int) -> np.ndarray:
    logits = np.full((count, classes), np.nan, dtype=np.float32)
    for line in output.splitlines():
        if line.startswith("logits "):
            index, *words = line.split()[1:]
            logits[int(index)] = np.array([int(w, 16) for w in words], dtype=np.uint32).view(np.float32)
    if np.isnan(logits).any() or f"done {count}" not in output:
        raise RuntimeError(f"the firmware did not print all {count} results; its output ends:\n{output[-2000:]}")
    return logits


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Export, build, run in QEMU and compare; returns the result payload."""
    import torch

    from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
    from albsnn_compress.checkpoint import load_checkpoint
    from albsnn_compress.data import load_split
    from albsnn_compress.formats.c.export import export_c
    from albsnn_compress.formats.container.file import read_container

    if args.container is not None:
        model, source = read_container(args.container).model, f"container {args.container.name}"
    else:
        model = load_checkpoint(args.checkpoint)
        binarize_(model, candidate_layers(model))
        source = f"checkpoint {args.checkpoint.name}, every candidate binarized by binarize_ (no finetuning)"
    test = load_split("fashion-mnist", args.data_root, "test")
    pixels = test.images[: args.images].numpy().astype(np.uint8)
    with torch.inference_mode():
        reference = model(test.as_float(torch.arange(args.images))).numpy()

    build = Path(tempfile.mkdtemp(prefix="cortex-m-"))
    try:
        export = export_c(model, build / "model_c")
        (build / "images.h").write_text(_images_header(pixels))
        objects = []
        for source_file, strict in (
            (build / "model_c" / "albsnn_model.c", True),
            (build / "model_c" / "albsnn_kernels.c", True),
            (HERE / "main.c", False),
            (HERE / "startup.c", False),
        ):
            target = build / f"{source_file.stem}.o"
            flags = [
                *CFLAGS,
                *(["-pedantic", "-Werror"] if strict else []),
                "-I",
                str(build / "model_c"),
                "-I",
                str(build),
            ]
            subprocess.run(["arm-none-eabi-gcc", *flags, "-c", str(source_file), "-o", str(target)], check=True)
            objects.append(target)
        firmware = build / "firmware.elf"
        subprocess.run(["arm-none-eabi-gcc", *CFLAGS, *LDFLAGS, *map(str, objects), "-o", str(firmware)], check=True)
        print("arm-none-eabi-size:")
        sizes = _size([firmware, objects[0], objects[1]])
        start = time.perf_counter()
        done = subprocess.run([*QEMU, str(firmware)], capture_output=True, text=True, timeout=args.timeout, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"QEMU exited {done.returncode}: {done.stderr[-2000:]}{done.stdout[-2000:]}")
        logits = _parse_logits(done.stdout, args.images, model.spec["num_classes"])
        instructions = _instructions(done.stdout)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    tolerance = 1e-4 * max(1.0, float(np.abs(reference).max()))
    diff = np.abs(logits - reference).max(axis=1)
    agree = (logits.argmax(1) == reference.argmax(1)).mean()
    labels = test.labels[: args.images].numpy()
    versions = {
        tool: subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        for tool in ("arm-none-eabi-gcc", "qemu-system-arm")
    }
    return {
        "model": {
            "source": source,
            "arch": model.spec["name"],
            "timesteps": model.timesteps,
            "binarized": binarized_layers(model),
        },
        "target": {
            "board": "qemu-system-arm -M mps2-an386 (Cortex-M4F)",
            "cflags": CFLAGS,
            "ldflags": [f for f in LDFLAGS if not f.startswith("-T")] + ["-T mps2_an386.ld"],
            "tools": versions,
        },
        "export": {"weight_bytes": export.weight_bytes, "arena_bytes": export.arena_bytes},
        "size": sizes,
        "images": args.images,
        "agreement": {
            "identical_predictions": float(agree),
            "max_abs_logit_diff": float(diff.max()),
            "images_logits_off": int((diff > tolerance).sum()),
            "tolerance": tolerance,
            "accuracy_c": float((logits.argmax(1) == labels).mean()),
            "accuracy_pytorch": float((reference.argmax(1) == labels).mean()),
        },
        "instructions_per_inference": {
            "median": float(np.median(instructions)),
            "min": float(min(instructions)),
            "max": float(max(instructions)),
            "note": (
                "QEMU -icount instruction counts (SysTick calibrated by a loop of known length), not Cortex-M4 cycles"
            ),
        },
        "qemu_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print and write ``benchmarks/results/c-cortex-m4.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "benchmarks" / "checkpoints" / "fmnist-vgg-T1.pt")
    parser.add_argument("--container", type=Path, default=None, help="a compressed .albsnn to run instead")
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared" / "datasets", help="folder with FashionMNIST/"
    )
    parser.add_argument("--images", type=int, default=100, help="test images to run (default 100)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds QEMU may run")
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/c-cortex-m4.json)"
    )
    args = parser.parse_args(argv)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(
            f"cortex_m: skipped, {', '.join(missing)} not on PATH; "
            "install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
        )
        return
    from benchmarks.machine import RESULTS, write_result

    result = run(args)
    row = result["agreement"]
    print(
        f"{args.images} images: {row['identical_predictions']:.2%} identical predictions, "
        f"max |dlogit| {row['max_abs_logit_diff']:.2e}, "
        f"{row['images_logits_off']} off by > {row['tolerance']:.0e}; QEMU {result['qemu_seconds']:.1f} s; "
        f"{result['instructions_per_inference']['median'] / 1e6:.2f} M instructions per inference (QEMU -icount)"
    )
    output = args.output or RESULTS / "c-cortex-m4.json"
    path = write_result(output.stem, result, output.parent, module="benchmarks.cortex_m.run", argv=argv)
    print(f"wrote {path}")
    if row["identical_predictions"] < 1.0:
        sys.exit("cortex_m: predictions differ from PyTorch")


if __name__ == "__main__":
    main()
