"""C export of 2-, 4- and 8-bit layers: integer codes in flash, integer-code kernels, PyTorch's answers.

The trained digits network with every conv at 8, 4 or 2 bits, and a mixed one (conv1 8-bit, conv2 4-bit,
conv3 2-bit, conv4 1-bit, conv5 float), exported, compiled with -Werror and the strict-aliasing warnings and
run on the digits test split: the predictions are PyTorch's and the logits within ``tests/test_c_export.py``'s
tolerance, except on images whose first differing spike is a threshold tie (traced). Each model is compiled
once (the kernels once per set of flags) and its build shared by the tests.

In flash a k-bit layer is its codes, packed at k bits as the container and the ONNX export pack them, plus one
float32 scale per output channel: the float export's weights less exactly that. The dense and the event-driven
code kernels sum the same integers, so they give the same logits and membranes bit for bit; the kernels refuse
bad descriptors, their scratch-size functions give the planner's numbers, and ASan/UBSan builds run clean.
"""

from __future__ import annotations

import copy
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_codes, unpack_codes
from albsnn_compress.formats.c.export import build_c_sources
from albsnn_compress.formats.c.ops import ConvOp
from albsnn_compress.formats.c.plan import plan_model
from albsnn_compress.formats.c.source import KERNELS_C, render_files
from albsnn_compress.formats.c.trace import TRACE_HOOK_C, TRACE_RECORD
from albsnn_compress.precision import FLOAT_BITS, layer_bits, set_precision_, weight_codes
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from tests.test_c_export import (
    CC,
    HARNESS,
    SANITIZE,
    SCRATCH_FUNCTIONS,
    STRICT_ALIASING,
    TEMPLATE_DIR,
    _build,
    _check_flips_are_ties,
    _run,
    _scratch_program,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH"),
    pytest.mark.subprocess,  # compiles and runs C, sanitizers included
]

CONVS = [f"layers.conv{i}" for i in range(1, 6)]
# name -> (time steps, bits per layer): every conv at one precision (one step: firing ranges and pixel-major
# spike maps; several: the neurons after the affine), and a mix of every precision with the last layer float
CASES: dict[str, tuple[int, dict[str, int]]] = {
    "8-bit-T1": (1, dict.fromkeys(CONVS, 8)),
    "4-bit-T4": (4, dict.fromkeys(CONVS, 4)),
    "2-bit-T1": (1, dict.fromkeys(CONVS, 2)),
    "mixed-T2": (2, {"layers.conv1": 8, "layers.conv2": 4, "layers.conv3": 2, "layers.conv4": 1}),
}
CODE_KERNELS = {"albsnn_conv_code_rows", "albsnn_conv_code_events"}
CODE_SCRATCH = {
    **SCRATCH_FUNCTIONS,
    "albsnn_conv_code_rows": ("albsnn_conv_code_rows_scratch", None, None),
    "albsnn_conv_code_events": (
        None,
        "albsnn_conv_code_events_scratch_words",
        "albsnn_conv_code_events_scratch_counts",
    ),
}


def _model(checkpoint: Path, case: str) -> SpikingNet:
    """The trained digits network at the case's time steps and precisions (quantized from its float weights)."""
    timesteps, bits = CASES[case]
    base = load_checkpoint(checkpoint)
    model = SpikingNet(copy.deepcopy(base.spec), timesteps)
    model.load_state_dict(base.state_dict())
    set_precision_(model, bits)
    return model.eval()


def _code_layers(plan_ops: list[object]) -> list[ConvOp]:
    return [op for op in plan_ops if isinstance(op, ConvOp) and op.codes is not None]


@dataclass
class Build:
    """One case exported and compiled: its model, files, folder and logits on the test split."""

    model: SpikingNet
    files: dict[str, str]
    folder: Path
    logits: np.ndarray


class Builds:
    """Each (case, kernel choice) exported and compiled once; the kernels compiled once per set of flags."""

    def __init__(self, checkpoint: Path, images: torch.Tensor, work: Path) -> None:
        self.checkpoint, self.images, self.work = checkpoint, images, work
        self.objects: dict[tuple[str, ...], Path] = {}
        self.builds: dict[tuple[str, str], Build] = {}
        (work / "harness.c").write_text(HARNESS)
        (work / "trace_hook.c").write_text(TRACE_HOOK_C)

    def kernels(self, flags: tuple[str, ...]) -> Path:
        """``albsnn_kernels.c`` compiled with ``flags`` (the template: the export copies it byte for byte)."""
        if flags not in self.objects:
            target = self.work / f"kernels{len(self.objects)}.o"
            _build([CC, *flags, "-c", "-I", TEMPLATE_DIR, TEMPLATE_DIR / KERNELS_C, "-o", target])
            self.objects[flags] = target
        return self.objects[flags]

    def binary(self, folder: Path, flags: tuple[str, ...], name: str) -> Path:
        """The harness and ``folder``'s model (with the trace hook under -DALBSNN_TRACE) linked to the kernels."""
        sources = [self.work / "harness.c", folder / "albsnn_model.c"]
        if "-DALBSNN_TRACE" in flags:
            sources.append(self.work / "trace_hook.c")
        target = folder.parent / name
        _build([CC, *flags, "-I", folder, *sources, self.kernels(flags), "-o", target])
        return target

    def get(self, case: str, kernels: str = "auto") -> Build:
        """The case exported with ``kernels`` (no calibration: every layer over spikes event by event), compiled
        with the strict-aliasing warnings as errors and run on the test images."""
        if (case, kernels) not in self.builds:
            model = _model(self.checkpoint, case)
            folder = self.work / f"{case}-{kernels}" / "model_c"
            folder.mkdir(parents=True)
            files = render_files(model, plan_model(model, kernels=kernels), "packed")
            for name, text in files.items():
                (folder / name).write_text(text)
            binary = self.binary(folder, tuple(STRICT_ALIASING), "model")
            logits, _ = _run(binary, self.images, folder.parent)
            self.builds[(case, kernels)] = Build(model, files, folder, logits)
        return self.builds[(case, kernels)]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """The digits test split (all 359 images)."""
    return load_split("digits", None, "test").as_float()


@pytest.fixture(scope="module")
def builds(digits_checkpoint: Path, images: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(digits_checkpoint, images, tmp_path_factory.mktemp("kbit"))


@pytest.mark.parametrize("case", list(CASES))
def test_kbit_layers_run_the_code_kernels_and_give_pytorchs_answers(
    case: str, builds: Builds, images: torch.Tensor, tmp_path: Path
) -> None:
    """Every k-bit layer runs a code kernel (dense over the image, event by event over spikes) and the compiled
    model gives PyTorch's predictions and logits (1e-4 of the largest) on every image but threshold ties."""
    build = builds.get(case)
    plan = plan_model(build.model)
    for op in (op for op in plan.ops if isinstance(op, ConvOp)):
        bits = layer_bits(build.model)[f"layers.{op.label.split(' + ')[0]}"]
        expected = (
            ("albsnn_conv_code_events" if op.inp.is_bits else "albsnn_conv_code_rows")
            if 1 < bits < FLOAT_BITS
            else "albsnn_conv_bit_events"
            if bits == 1
            else "albsnn_conv_events"
        )
        assert op.function == expected, op.label
        assert f"status = {expected}(&{op.ident}," in build.files["albsnn_model.c"]
    with torch.inference_mode():
        reference = build.model(images).numpy()
    assert len(np.unique(reference.argmax(axis=1))) > 2, "degenerate model: (nearly) every image gets the same class"
    tolerance = 1e-4 * max(1.0, float(np.abs(reference).max()))
    differs = (build.logits.argmax(axis=1) != reference.argmax(axis=1)) | (
        np.abs(build.logits - reference).max(axis=1) > tolerance
    )
    off = np.flatnonzero(differs)
    assert len(off) <= 0.01 * len(images), f"logits differ on {len(off)} of {len(images)} images"
    if len(off):  # each one a tie: its first differing spike sits on the threshold
        traced = builds.binary(build.folder, (*STRICT_ALIASING, "-DALBSNN_TRACE"), "traced")
        _check_flips_are_ties(build.model, traced, images, off, tmp_path)


def _arrays_bytes(op: ConvOp) -> int:
    return sum(array.nbytes for array in op.arrays())


def test_a_kbit_layer_in_flash_is_its_codes_and_scales(digits_checkpoint: Path) -> None:
    """A k-bit layer stores its codes packed at k bits (the dense kernel's: the container's and the ONNX export's
    bytes; the event kernel's: the same codes pixel-major, each row from a byte of its own) and one float32 scale
    per output channel; everything else is as in the float export, which stores 4 bytes per weight instead."""
    for case in CASES:
        model = _model(digits_checkpoint, case)
        floats = plan_model(model, weights="float")
        modules = dict(model.named_modules())
        for kernels in ("events", "dense"):
            plan = plan_model(model, kernels=kernels)
            pairs = [(op, f) for op, f in zip(plan.ops, floats.ops) if isinstance(op, ConvOp)]
            saved = total = 0
            for op, baseline in pairs:
                assert isinstance(baseline, ConvOp)
                weights, float_weights = op.arrays()[0], baseline.arrays()[0]
                saved += float_weights.nbytes - weights.nbytes
                total += float_weights.nbytes
                if op.codes is None:
                    continue
                k, cout = op.codes.bits, op.out.channels // op.groups
                weight = modules[f"layers.{op.label.split(' + ')[0]}"].weight
                assert isinstance(weight, torch.Tensor)
                codes, _ = weight_codes(weight, k)
                count = codes.numel()
                assert float_weights.nbytes == 4 * count
                if op.events:  # rows of [ky][kx][c], each out c codes from a byte of its own
                    rows = count // cout
                    assert weights.nbytes == rows * math.ceil(cout * k / 8)
                    assert isinstance(weights.values, bytes)
                    stored = np.frombuffer(weights.values, np.uint8).reshape(rows, -1)
                    unpacked = np.stack([unpack_codes(row.tobytes(), cout, k) for row in stored])
                    transposed = codes.numpy().reshape(cout, op.inp.channels, -1).transpose(2, 1, 0).reshape(rows, cout)
                    np.testing.assert_array_equal(unpacked, transposed)
                else:
                    assert weights.values == pack_codes(codes, k)
                    assert weights.nbytes == math.ceil(count * k / 8)
                assert _arrays_bytes(baseline) - _arrays_bytes(op) == float_weights.nbytes - weights.nbytes
                assert op.arrays()[1].nbytes == 4 * op.out.channels  # the float32 scale per output channel
            assert floats.weight_bytes - plan.weight_bytes == saved > 0
            bits = set(CASES[case][1].values())
            if len(bits) == 1:  # the weights take 32 / k times less flash, less the padding of a row's last byte
                assert saved >= (1 - bits.pop() / 32 - 0.01) * total


def test_the_same_kbit_model_gives_the_same_bytes(digits_checkpoint: Path) -> None:
    model = _model(digits_checkpoint, "mixed-T2")
    assert build_c_sources(model).files == build_c_sources(copy.deepcopy(model)).files


@pytest.mark.parametrize("case", ["2-bit-T1", "4-bit-T4"])
def test_dense_and_event_code_kernels_give_the_same_bits(case: str, builds: Builds, images: torch.Tensor) -> None:
    """``albsnn_conv_code_rows`` over bit planes sums the codes as floats, every partial sum an integer below 2^24,
    so exactly the event kernel's int32 sums: the same logits bit for bit; with one time step the same membranes
    and spikes of every neuron (firing ranges of integers against the same ranges as float keys)."""
    events, dense = builds.get(case), builds.get(case, "dense")
    for build, kernel in ((events, "albsnn_conv_code_events"), (dense, "albsnn_conv_code_rows")):
        used = {name for name in CODE_KERNELS if f"status = {name}(" in build.files["albsnn_model.c"]}
        assert used == {"albsnn_conv_code_rows", kernel}  # the first layer reads the image: dense in both
    np.testing.assert_array_equal(dense.logits.view(np.uint32), events.logits.view(np.uint32))
    if CASES[case][0] != 1:
        return
    traces = []
    for build in (events, dense):
        traced = builds.binary(build.folder, (*STRICT_ALIASING, "-DALBSNN_TRACE"), "traced")
        _run(traced, images[:64], build.folder.parent, str(build.folder.parent / "trace.bin"))
        records = np.fromfile(build.folder.parent / "trace.bin", dtype=TRACE_RECORD)
        image = np.repeat(np.arange(64), len(records) // 64)
        traces.append(records[np.lexsort((records["index"], records["step"], records["layer"], image))])
    assert len(traces[0]) == len(traces[1]) > 64 * 1000
    for field in ("layer", "step", "index", "spike"):
        np.testing.assert_array_equal(traces[0][field], traces[1][field])
    np.testing.assert_array_equal(traces[0]["h"].view(np.uint32), traces[1]["h"].view(np.uint32))


# The code kernels' argument checks: each refused call returns its status and writes nothing.
BAD_CODE_ARGUMENTS = r"""
#include <stdio.h>
#include "albsnn_kernels.h"

static int failures = 0;

#define EXPECT(call, want)                                                                          \
    do {                                                                                            \
        const int got_ = (int)(call);                                                               \
        if (got_ != (want)) {                                                                       \
            printf("line %d: %s gave %d, expected %d\n", __LINE__, #call, got_, (want));            \
            ++failures;                                                                             \
        }                                                                                           \
    } while (0)

int main(void)
{
    /* 2 -> 2 channels, 3x3 over 4x4, 4-bit codes: 18 codes, 9 bytes (dense); 18 rows of 1 byte (events) */
    static const uint8_t codes[18] = {0x12u, 0x34u, 0x56u, 0x70u, 0x9Au, 0xBCu, 0xDEu, 0xF1u, 0x23u};
    static const float scale[2] = {1.0f, 0.5f}, bias[2] = {0.0f, 0.25f}, w[36] = {0.0f};
    static const uint8_t bits[5] = {0u};
    static const albsnn_code_conv ok = {
        {{2u, 4u, 4u, 1u, 1u, 1u, 0u, 0u}, {2u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, 3u, 1u, 1u, 1u,
         NULL, NULL, scale, bias, NULL, NULL}, codes, 4u};
    albsnn_code_conv bad;
    uint32_t x[1] = {0xFFFFFFFFu};
    float y[32];
    uint64_t words[64];
    int32_t counts[64];
    float scratch[64];
    size_t i;
    const size_t n_words = albsnn_conv_code_events_scratch_words(&ok);
    const size_t n_counts = albsnn_conv_code_events_scratch_counts(&ok);
    const size_t n_floats = albsnn_conv_code_rows_scratch(&ok);
    EXPECT(n_words > 0u && n_counts == 2u && n_floats > 0u, 1);
    EXPECT(albsnn_conv_code_events(&ok, x, y, words, n_words, counts, n_counts), ALBSNN_OK);
    EXPECT(albsnn_conv_code_rows(&ok, x, y, scratch, n_floats), ALBSNN_OK);
    for (i = 0; i < 32u; ++i) {
        y[i] = 7.0f;
    }
    EXPECT(albsnn_conv_code_events(NULL, x, y, words, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_code_events(&ok, x, y, words, n_words - 1u, counts, n_counts), ALBSNN_ERR_SCRATCH);
    EXPECT(albsnn_conv_code_events(&ok, x, y, words, n_words, counts, n_counts - 1u), ALBSNN_ERR_SCRATCH);
    EXPECT(albsnn_conv_code_rows(&ok, x, y, scratch, n_floats - 1u), ALBSNN_ERR_SCRATCH);
    bad = ok;
    bad.codes = NULL;
    EXPECT(albsnn_conv_code_events(&bad, x, y, words, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_code_rows_scratch(&bad), 0);
    bad = ok;
    bad.code_bits = 3u;
    EXPECT(albsnn_conv_code_rows(&bad, x, y, scratch, n_floats), ALBSNN_ERR_DESCRIPTOR);
    bad = ok;
    bad.conv.weight = w; /* codes and float weights: which? */
    EXPECT(albsnn_conv_code_events(&bad, x, y, words, n_words, counts, n_counts), ALBSNN_ERR_DESCRIPTOR);
    bad = ok;
    bad.conv.bits = bits;
    EXPECT(albsnn_conv_code_rows(&bad, x, y, scratch, n_floats), ALBSNN_ERR_DESCRIPTOR);
    bad = ok;
    bad.conv.in.planes = 0u; /* floats: no events */
    EXPECT(albsnn_conv_code_events_scratch_words(&bad), 0);
    bad = ok;
    bad.conv.in.planes = 20u; /* counts up to 2^20 - 1: sums past 2^24, not exact */
    EXPECT(albsnn_conv_code_rows(&bad, x, y, scratch, n_floats), ALBSNN_ERR_DESCRIPTOR);
    bad = ok;
    bad.conv.out.h = 3u;
    EXPECT(albsnn_conv_code_events(&bad, x, y, words, n_words, counts, n_counts), ALBSNN_ERR_DESCRIPTOR);
    for (i = 0; i < 32u; ++i) {
        if (y[i] != 7.0f) {
            printf("a refused call wrote y[%u]\n", (unsigned)i);
            ++failures;
            break;
        }
    }
    if (failures == 0) {
        printf("ok\n");
    }
    return failures != 0;
}
"""


def test_sanitized_builds_run_clean_and_the_code_kernels_check_their_arguments(
    builds: Builds, images: torch.Tensor, tmp_path: Path
) -> None:
    """Under ASan and UBSan (alignment included) the k-bit builds give the strict build's logits bit for bit, and
    the code kernels return the documented status on NULL pointers, short scratch and inconsistent descriptors."""
    flags = tuple(SANITIZE)
    for case in ("2-bit-T1", "mixed-T2"):
        build = builds.get(case)
        binary = builds.binary(build.folder, flags, "sanitized")
        logits, stderr = _run(binary, images[:8], build.folder.parent)
        assert stderr == ""
        np.testing.assert_array_equal(logits, build.logits[:8])
    (tmp_path / "bad.c").write_text(BAD_CODE_ARGUMENTS)
    checks = tmp_path / "bad"
    warnings = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
    _build([CC, *flags, *warnings, "-I", TEMPLATE_DIR, tmp_path / "bad.c", builds.kernels(flags), "-o", checks])
    done = subprocess.run([str(checks)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_code_kernel_scratch_sizes_agree_with_the_plan(digits_checkpoint: Path, builds: Builds, tmp_path: Path) -> None:
    """albsnn_conv_code_*_scratch from the descriptors give what the planner reserved (dense and events, spikes
    and count planes, one step and several)."""
    functions = set()
    for case, kernels in [("2-bit-T1", "events"), ("4-bit-T4", "events"), ("8-bit-T1", "dense")]:
        ops = _code_layers(plan_model(_model(digits_checkpoint, case), kernels=kernels).ops)
        functions |= {op.function for op in ops}
        (tmp_path / "scratch.c").write_text(_scratch_program(ops, CODE_SCRATCH))
        binary = tmp_path / "scratch"
        flags = tuple(STRICT_ALIASING)
        _build([CC, *flags, "-I", TEMPLATE_DIR, tmp_path / "scratch.c", builds.kernels(flags), "-o", binary])
        lines = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines()
        for op, line in zip(ops, lines, strict=True):
            floats, words, counts = map(int, line.split())
            assert (floats, words, counts) == (op.scratch_floats, op.scratch_words, op.scratch_counts), op.label
            assert op.scratch_bytes == 4 * floats + 8 * words + 4 * counts > 0, op.label
    assert functions == CODE_KERNELS


def _wide_spec() -> dict[str, object]:
    """A conv of 2048 channels, a 4x4 average pool (counts up to 16: five planes) and a linear layer of 8192 inputs."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["layers"] = [
        {"type": "conv", "out_channels": 2048, "kernel_size": 1},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 4},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
    return spec


def test_sums_the_kernels_cannot_add_exactly_are_refused() -> None:
    """8192 inputs of 8-bit codes over counts up to 31 can sum past 2^24: refused, the layer named."""
    model = SpikingNet(_wide_spec(), 1)
    set_precision_(model, {"layers.linear1": 8})
    with pytest.raises(ExportError, match=r"layer linear1: 8192 inputs of 8-bit codes .* 2\^24"):
        plan_model(model)
    set_precision_(model, {"layers.linear1": 2})  # 8192 x 1 x 31: exact
    assert _code_layers(plan_model(model).ops)[0].function == "albsnn_conv_code_events"
