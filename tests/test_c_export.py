"""C export: the folder compiles with -Werror -pedantic, agrees with PyTorch on the digits test split,
runs clean under ASan/UBSan, is byte-identical for the same model, and refuses what it cannot express."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_signs
from albsnn_compress.formats.c.export import build_c_sources, export_c
from albsnn_compress.formats.c.plan import C_EMITTERS, plan_model
from albsnn_compress.formats.c.trace import TRACE_HOOK_C, TRACE_RECORD, first_flip
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.snn.layer_types import LAYER_TYPES, LayerType, registered, same_shape
from albsnn_compress.snn.neurons import LIF, RESET_MODES, ResetMode
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from tests.clihelp import run_cli

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")

STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = [
    "-std=c99",
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]
TIE_MARGIN = 1e-4  # a flipped spike must sit this close to the threshold to count as a tie

# Reads float32 images from argv[1], writes float32 logits to argv[2]; built with -DALBSNN_TRACE (and
# TRACE_HOOK_C) it also writes every neuron's trace record to argv[3].
HARNESS = r"""
#include <stdio.h>
#include "albsnn_model.h"

#ifdef ALBSNN_TRACE
extern FILE *albsnn_trace_file;
#endif

int main(int argc, char **argv)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    const size_t n = sizeof pixels / sizeof pixels[0];
    FILE *in, *out;
    if (argc < 3 || (in = fopen(argv[1], "rb")) == NULL || (out = fopen(argv[2], "wb")) == NULL) {
        return 2;
    }
#ifdef ALBSNN_TRACE
    if (argc < 4 || (albsnn_trace_file = fopen(argv[3], "wb")) == NULL) {
        return 2;
    }
#endif
    while (fread(pixels, sizeof pixels[0], n, in) == n) {
        if (albsnn_infer(pixels, logits) != 0) {
            return 3;
        }
        fwrite(logits, sizeof logits[0], ALBSNN_NUM_CLASSES, out);
    }
    if (albsnn_infer(NULL, logits) != -1) {
        return 4;
    }
    return fclose(in) | fclose(out);
}
"""


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """The digits test split (all 359 images) and a few training images for batch-norm statistics."""
    return {
        "test": load_split("digits", None, "test").as_float(),
        "train": load_split("digits", None, "train").as_float()[:256],
    }


def _trained(checkpoint: Path, timesteps: int, reset: str, binarize: str) -> SpikingNet:
    """The trained digits network at ``timesteps`` with ``reset``; ``middle``: conv3 binarized, ``candidates``: all three."""
    base = load_checkpoint(checkpoint)
    spec = copy.deepcopy(base.spec)
    spec["neuron"]["reset"] = reset
    model = SpikingNet(spec, timesteps)
    model.load_state_dict(base.state_dict())
    binarize_(model, ["layers.conv3"] if binarize == "middle" else candidate_layers(model))
    return model.eval()


def _pool_head_spec() -> dict[str, Any]:
    """Grouped, strided and 5x5 convs with bias, max pooling, a lone batch norm, BN1d, a linear head; odd neurons."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["neuron"] = {"tau": 1.5, "v_threshold": 0.8, "v_reset": -0.25, "reset": "hard"}
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 4, "bias": True},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 16, "kernel_size": 5, "padding": 2, "groups": 2},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 32, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 10},
    ]
    return spec


def _no_lif_spec() -> dict[str, Any]:
    """A stateless network: every step computes the same thing."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "conv", "out_channels": 10, "kernel_size": 1},
        {"type": "gap"},
    ]
    return spec


def _lively(spec: dict[str, Any], timesteps: int, images: torch.Tensor, reset: str = "hard") -> SpikingNet:
    """A random network with lively spikes, every conv/linear binarized (the first too): BN stats from real images."""
    torch.manual_seed(0)
    spec = {**spec, "neuron": {**spec.get("neuron", {}), "reset": reset}}
    model = SpikingNet(spec, timesteps)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None  # the running statistics are the plain average over the batches below
    binarize_(model, candidate_layers(model, include_first_last=True))
    model.train()
    with torch.no_grad():
        for batch in images.split(64):
            model(batch)
    return model.eval()


def _compile(folder: Path, flags: list[str], output: Path, extra: tuple[str, ...] = ()) -> Path:
    """The harness and the folder's C files; with ``-DALBSNN_TRACE`` in ``extra`` also the trace hook."""
    (folder.parent / "harness.c").write_text(HARNESS)
    (folder.parent / "trace_hook.c").write_text(TRACE_HOOK_C)
    sources = [folder.parent / "harness.c", *sorted(folder.glob("*.c"))]
    if "-DALBSNN_TRACE" in extra:
        sources.append(folder.parent / "trace_hook.c")
    done = subprocess.run(
        [CC, *flags, *extra, "-I", str(folder), *map(str, sources), "-o", str(output)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return output


def _run(binary: Path, images: torch.Tensor, work: Path, *trace: str) -> tuple[np.ndarray, str]:
    images.numpy().astype(np.float32).tofile(work / "images.f32")
    done = subprocess.run(
        [str(binary), str(work / "images.f32"), str(work / "logits.f32"), *trace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return np.fromfile(work / "logits.f32", dtype=np.float32).reshape(len(images), -1), done.stderr


def _check_flips_are_ties(
    model: SpikingNet, trace_binary: Path, images: torch.Tensor, rows: np.ndarray, work: Path
) -> None:
    """Each image in ``rows`` must first differ from PyTorch in a spike whose C membrane sits on the threshold.

    See :mod:`albsnn_compress.formats.c.trace`: at the first differing (layer, step) both
    saw the same spikes, so a flip there is a tie or a bug.
    """
    for row in rows:
        _run(trace_binary, images[row : row + 1], work, str(work / "trace.bin"))
        flip = first_flip(
            model, images[row], (work / "trace.bin").read_bytes(), batch=images, row=int(row)
        )  # the reference's batch
        assert flip is not None, f"image {row}: logits differ although every spike agrees"
        assert flip.margin <= TIE_MARGIN, (
            f"image {row}: spike flip {flip.margin:.3g} away from the threshold (layer {flip.layer}, step {flip.step})"
        )


def _agreement(model: SpikingNet, folder: Path, images: torch.Tensor, work: Path) -> None:
    """The compiled folder's logits against PyTorch: >= 99.9 % identical predictions, 1e-4 except ties."""
    binary = _compile(folder, STRICT, work / "model")
    logits, _ = _run(binary, images, work)
    with torch.inference_mode():
        reference = model(images).numpy()
    assert len(np.unique(reference.argmax(axis=1))) > 2, "degenerate model: (nearly) every image gets the same class"
    agree = (logits.argmax(axis=1) == reference.argmax(axis=1)).mean()
    assert agree >= 0.999, f"predictions agree on {agree:.2%}"
    tolerance = 1e-4 * max(1.0, float(np.abs(reference).max()))
    off = np.flatnonzero(np.abs(logits - reference).max(axis=1) > tolerance)
    assert len(off) <= 0.01 * len(images), f"logits differ on {len(off)} of {len(images)} images"
    if len(off):
        _check_flips_are_ties(model, _compile(folder, STRICT, work / "traced", ("-DALBSNN_TRACE",)), images, off, work)


# (id, how to build the model, weights)
CASES = [
    ("trained-T1-hard-middle", lambda ckpt, d: _trained(ckpt, 1, "hard", "middle"), "packed"),
    ("trained-T4-hard", lambda ckpt, d: _trained(ckpt, 4, "hard", "candidates"), "packed"),
    ("trained-T4-soft", lambda ckpt, d: _trained(ckpt, 4, "soft", "candidates"), "packed"),
    ("trained-T4-float-weights", lambda ckpt, d: _trained(ckpt, 4, "hard", "candidates"), "float"),
    ("maxpool-linear-T2-hard", lambda ckpt, d: _lively(_pool_head_spec(), 2, d["train"]), "packed"),
    ("maxpool-linear-T3-soft", lambda ckpt, d: _lively(_pool_head_spec(), 3, d["train"], "soft"), "packed"),
    ("no-lif-T2", lambda ckpt, d: _lively(_no_lif_spec(), 2, d["train"]), "packed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compiled_c_matches_pytorch_on_the_digits_test_split(
    case: tuple[Any, ...], digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    _, make, weights = case
    model = make(digits_checkpoint, digits)
    assert binarized_layers(model)
    export_c(model, tmp_path / "model_c", weights=weights)
    _agreement(model, tmp_path / "model_c", digits["test"], tmp_path)


def test_integer_firing_ranges_give_the_float_decision(
    digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """With one time step the popcount layers fire on an integer range; the trace's float membrane must agree everywhere."""
    model = _trained(digits_checkpoint, 1, "hard", "candidates")
    export = export_c(model, tmp_path / "model_c")
    assert "_fires[" in export.files["albsnn_model.c"]
    traced = _compile(tmp_path / "model_c", STRICT, tmp_path / "traced", ("-DALBSNN_TRACE",))
    _run(traced, digits["test"][:40], tmp_path, str(tmp_path / "trace.bin"))
    records = np.fromfile(tmp_path / "trace.bin", dtype=TRACE_RECORD)
    assert len(records) > 40 * 1000
    np.testing.assert_array_equal(records["spike"] > 0, records["h"] >= np.float32(model.spec["neuron"]["v_threshold"]))


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=[CASES[1][0], CASES[4][0]])
def test_sanitized_build_runs_clean(
    case: tuple[Any, ...], digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    model = case[1](digits_checkpoint, digits)
    export_c(model, tmp_path / "model_c")
    binary = _compile(tmp_path / "model_c", SANITIZE, tmp_path / "sanitized")
    logits, stderr = _run(binary, digits["test"][:6], tmp_path)
    assert stderr == ""
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(digits["test"][:6]).numpy(), rtol=0, atol=1e-4)


def test_flip_check_rejects_a_wrong_threshold(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    model = _lively(_pool_head_spec(), 2, digits["train"])
    shifted = copy.deepcopy(model)
    for neuron in shifted.modules():
        if isinstance(neuron, LIF):
            neuron.v_threshold = 0.85  # the export computes with 0.85, PyTorch with 0.8
    export_c(shifted, tmp_path / "model_c")
    images = digits["test"][:40]
    logits, _ = _run(_compile(tmp_path / "model_c", STRICT, tmp_path / "model"), images, tmp_path)
    with torch.inference_mode():
        off = np.flatnonzero(np.abs(logits - model(images).numpy()).max(axis=1) > 1e-4)
    assert len(off) > 0.5 * len(images)
    traced = _compile(tmp_path / "model_c", STRICT, tmp_path / "traced", ("-DALBSNN_TRACE",))
    with pytest.raises(AssertionError, match="spike flip .* away from the threshold"):
        _check_flips_are_ties(model, traced, images, off[:3], tmp_path)


def test_same_model_gives_the_same_bytes(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = _trained(digits_checkpoint, 4, "hard", "candidates")
    first, second = export_c(model, tmp_path / "a"), export_c(copy.deepcopy(model), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["README.md", "albsnn_kernels.c", "albsnn_kernels.h", "albsnn_model.c", "albsnn_model.h"]
    for name in names:
        assert (
            (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() == first.files[name].encode()
        )
    assert first == second
    export_c(model, tmp_path / "a")  # into an existing folder: replaced in place, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == names


def _array_bytes(source: str, name: str) -> bytes:
    body = re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", source, re.S)
    assert body is not None, name
    return bytes(int(v, 16) for v in re.findall(r"0x[0-9a-f]{2}", body.group(1)))


def _macros(header: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"#define (ALBSNN_\w+) (\d+)", header)}


def test_header_macros_and_packed_bits(digits_checkpoint: Path) -> None:
    model = _trained(digits_checkpoint, 4, "hard", "candidates")
    packed, floats = build_c_sources(model), build_c_sources(model, weights="float")
    macros = _macros(packed.files["albsnn_model.h"])
    assert macros == {
        "ALBSNN_INPUT_C": 1,
        "ALBSNN_INPUT_H": 8,
        "ALBSNN_INPUT_W": 8,
        "ALBSNN_NUM_CLASSES": 10,
        "ALBSNN_TIMESTEPS": 4,
        "ALBSNN_WEIGHT_BYTES": packed.weight_bytes,
        "ALBSNN_ARENA_BYTES": packed.arena_bytes,
    }
    assert "int albsnn_infer(const float *pixels, float *logits);" in packed.files["albsnn_model.h"]
    source = packed.files["albsnn_model.c"]
    for index, (name, module) in enumerate(model.layers.named_children()):
        if f"layers.{name}" in binarized_layers(model):
            assert _array_bytes(source, f"l{index}_{name}_bits") == pack_signs(module.weight)  # the container's bytes
            assert f"l{index}_{name}_w[" not in source
    assert "l0_conv1_w[" in source and "_bits[" not in floats.files["albsnn_model.c"]
    assert packed.weight_bytes * 4 < floats.weight_bytes
    for text in packed.files.values():
        assert "#include <" not in text.replace("#include <stddef.h>", "").replace("#include <stdint.h>", "")
        assert "malloc" not in text and " main(" not in text


def test_arena_holds_each_operation_without_overlap(digits_checkpoint: Path, digits: dict[str, torch.Tensor]) -> None:
    for model in (_trained(digits_checkpoint, 4, "hard", "candidates"), _lively(_pool_head_spec(), 3, digits["train"])):
        plan = plan_model(model)
        largest = 0
        for op, at in zip(plan.ops, plan.placements):
            spans = [(at.scratch, op.scratch_bytes)]
            if at.x is not None:
                spans.append((at.x, op.inp.nbytes))
            if at.y is not None and not op.in_place:
                spans.append((at.y, op.out.nbytes))
            spans = sorted((start, start + size) for start, size in spans if size)
            assert all(0 <= start and end <= plan.arena_bytes for start, end in spans), op.label
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"{op.label}: buffers overlap {spans}"
            largest = max(largest, sum(end - start for start, end in spans))
        assert largest <= plan.arena_bytes <= largest + 48  # the live set, up to 16-byte alignment of three buffers


def test_unsupported_layers_and_reset_rules_are_refused(
    digits: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _lively(_no_lif_spec(), 2, digits["train"])
    with pytest.raises(ExportError, match=r"unknown weights mode 'half'; choose one of \['packed', 'float'\]"):
        build_c_sources(model, weights="half")
    with pytest.raises(ExportError, match=r"expected a SpikingNet .* got Sequential"):
        build_c_sources(nn.Sequential())  # type: ignore[arg-type]
    broken = copy.deepcopy(model)
    broken.layers.gap1 = nn.Identity()
    supported = ", ".join(C_EMITTERS)
    with pytest.raises(
        ExportError, match=rf"layer gap1: the C export cannot express Identity; supported layer types: {supported}$"
    ):
        build_c_sources(broken)
    record = LayerType(
        name="gain",
        modules=(nn.Hardtanh,),
        fields={},
        build=lambda *_: nn.Hardtanh(),
        output_shape=same_shape,
        onnx=None,
    )  # type: ignore[arg-type]
    with registered(record):
        broken.layers.gap1 = nn.Hardtanh()
        with pytest.raises(
            ExportError, match=r"layer gap1: the C export cannot express Hardtanh \(layer type gain\)"
        ) as caught:
            build_c_sources(broken)
    assert "\n" not in str(caught.value) and "gain" not in LAYER_TYPES
    monkeypatch.setitem(RESET_MODES, "none", ResetMode(update=lambda _n, h, _s: h, onnx=lambda *_: ""))
    spiking = _lively(_pool_head_spec(), 2, digits["train"][:64], reset="none")
    with pytest.raises(
        ExportError, match=r"layer lif1: reset rule 'none' has no C form; the C export supports \['hard', 'soft'\]"
    ):
        build_c_sources(spiking)


def test_cli_exports_a_folder_and_refuses_a_file(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = _trained(digits_checkpoint, 1, "hard", "middle")
    write_container(tmp_path / "m.albsnn", model)
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "m_c")])
    expected = build_c_sources(read_container(tmp_path / "m.albsnn").model)
    assert expected == build_c_sources(model)
    assert {p.name: p.read_text() for p in (tmp_path / "m_c").iterdir()} == expected.files
    assert f"{expected.weight_bytes} bytes const (flash), {expected.arena_bytes} bytes arena (RAM)" in result.stdout
    (tmp_path / "file").write_text("x")
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "file")], 2)
    assert result.stderr.count("\n") == 1 and "is a file; the C export writes a folder" in result.stderr
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "no" / "m_c")], 2)
    assert result.stderr.count("\n") == 1 and "does not exist; create it first" in result.stderr
    result = run_cli(
        ["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "m_c")], 2
    )  # onnx into a folder: as before
    assert "File" in result.stderr and "is a directory." in result.stderr
