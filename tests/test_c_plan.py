"""The C plan: every neuron variant has a C form; inspect prints its flash and RAM, or why there is none; the kernel
of each layer over spikes follows its measured input density, deterministically; ``export --format c`` measures
the densities on training images and takes ``--kernels auto|dense|events``, every choice giving the same logits."""

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

from albsnn_compress.binarize import binarize_
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.c.export import export_c
from albsnn_compress.formats.c.ops import ConvOp
from albsnn_compress.formats.c.plan import EVENT_DENSITY, RESET_C, input_densities, plan_model
from albsnn_compress.formats.c.source import render_files
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet
from tests.clihelp import run_cli


@pytest.mark.parametrize(
    ("neuron", "per_channel", "constants"),
    [
        ({"leak": False}, [], "ALBSNN_CHARGE_IF, ALBSNN_RESET_HARD, 0u"),
        ({"decay_input": False}, [], "ALBSNN_CHARGE_DECAY, ALBSNN_RESET_HARD, 0u"),
        ({"strict_threshold": True}, [], "ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_HARD, 1u"),
        ({"reset": "soft_deferred"}, [], "ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_SOFT_DEFERRED, 0u"),
        ({"reset": "none"}, [], "ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_NONE, 0u"),
        ({}, ["tau"], "ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_HARD, 0u"),
    ],
)
def test_every_neuron_variant_has_a_c_form(
    tmp_path: Path, neuron: dict[str, Any], per_channel: list[str], constants: str
) -> None:
    """The variants the C export once refused plan and export, each neuron layer naming its charge rule, reset rule
    and strictness (tests/test_c_neurons.py runs them against PyTorch)."""
    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    spec["neuron"].update(neuron)
    next(layer for layer in spec["layers"] if layer["type"] == "lif")["per_channel"] = per_channel
    export = export_c(SpikingNet(spec).eval(), tmp_path / "out")
    assert export.files["albsnn_model.c"].count(constants) == 4  # every neuron layer of digits-small
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_inspect_prints_the_c_exports_flash_and_ram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SpikingNet(make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])).eval()
    binarize_(model, ["layers.conv2"])
    write_container(tmp_path / "m.albsnn", model)
    plan = plan_model(model, weights="packed")
    result = run_cli(["inspect", str(tmp_path / "m.albsnn")])
    text = " ".join(result.output.split())
    assert (
        f"flash {plan.weight_bytes:,} bytes (const weights), RAM {plan.arena_bytes:,} bytes (one static arena)" in text
    )
    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    spec["neuron"]["reset"] = "none"
    write_container(tmp_path / "none.albsnn", SpikingNet(spec).eval())
    assert "flash " in " ".join(run_cli(["inspect", str(tmp_path / "none.albsnn")]).output.split())
    monkeypatch.delitem(RESET_C, "none")  # a reset rule of the core without a C form: inspect says why
    assert "not expressible: layer lif1: reset rule 'none' has no C form" in " ".join(
        run_cli(["inspect", str(tmp_path / "none.albsnn")]).output.split()
    )


def _two_kinds() -> SpikingNet:
    """digits-small with conv2 binarized: a 1-bit layer over spikes and a float one over pooled counts."""
    torch.manual_seed(0)
    model = SpikingNet(make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25]), timesteps=2).eval()
    binarize_(model, ["layers.conv2"])
    for module in model.modules():  # lively neurons: a low threshold
        if isinstance(module, LIF):
            module.v_threshold = 0.05  # type: ignore[assignment]  # LIF sets it with setattr
    return model


def _over_bits(model: SpikingNet, **options: Any) -> dict[str, ConvOp]:
    """The conv and linear operations of ``plan_model(model, **options)`` that read bit planes, by layer."""
    plan = plan_model(model, **options)
    return {op.label.split(" ")[0]: op for op in plan.ops if isinstance(op, ConvOp) and op.inp.is_bits}


def test_kernels_follow_the_measured_input_density(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` picks events up to EVENT_DENSITY (per weight kind) and dense above it, by the density measured
    on the calibration images; without images every layer over spikes runs event by event."""
    model = _two_kinds()
    images = torch.rand(32, 1, 8, 8)
    densities = input_densities(model, images)
    assert set(densities) >= {"conv1", "conv2", "conv3"} and all(0.0 <= d <= 1.0 for d in densities.values())
    layers = _over_bits(model, calibration=images)
    assert layers["conv2"].bits is not None and layers["conv3"].bits is None  # a 1-bit and a float layer
    assert all(0.0 < op.density == densities[name] < 1.0 for name, op in layers.items())  # type: ignore[operator]
    for limit, variant in ((0.0, "dense"), (1.0, "events")):
        monkeypatch.setitem(EVENT_DENSITY, "bits", limit)
        monkeypatch.setitem(EVENT_DENSITY, "float", limit)
        assert {op.variant for op in _over_bits(model, calibration=images).values()} == {variant}
    monkeypatch.setitem(EVENT_DENSITY, "bits", densities["conv2"])  # the limit is inclusive
    monkeypatch.setitem(EVENT_DENSITY, "float", densities["conv3"] - 1e-9)
    for name, op in _over_bits(model, calibration=images).items():
        limit = EVENT_DENSITY["bits" if op.bits is not None else "float"]
        assert op.variant == ("events" if densities[name] <= limit else "dense"), name
    chosen = _over_bits(model, calibration=images)
    assert (chosen["conv2"].function, chosen["conv3"].function) == ("albsnn_conv_bit_events", "albsnn_conv_rows")
    assert {op.variant for op in _over_bits(model).values()} == {"events"}  # no images: spikes are sparse
    assert all(op.density is None for op in _over_bits(model).values())
    dense = _over_bits(model, kernels="dense", calibration=images)
    assert (dense["conv2"].function, dense["conv3"].function) == ("albsnn_conv_bits", "albsnn_conv_rows")
    events = _over_bits(model, kernels="events", calibration=images)
    assert (events["conv2"].function, events["conv3"].function) == ("albsnn_conv_bit_events", "albsnn_conv_events")


def test_the_kernel_choice_is_deterministic() -> None:
    """The same model and calibration images give byte-identical C; an unknown choice is refused."""
    model, images = _two_kinds(), torch.rand(16, 1, 8, 8)
    first = render_files(model, plan_model(model, calibration=images), "packed")
    again = render_files(copy.deepcopy(model), plan_model(model, calibration=images.clone()), "packed")
    assert first == again
    with pytest.raises(ExportError, match=r"unknown kernel choice 'fast'; choose one of \['auto', 'dense', 'events'\]"):
        plan_model(model, kernels="fast")


def _kernel_lines(stdout: str) -> dict[str, str]:
    """``  conv2 + bn2 + lif2: albsnn_conv_bit_events (input density 0.412)`` lines of the export's output."""
    return dict(re.findall(r"^  (\S+)[^:\n]*: (albsnn_conv_\w+)", stdout, re.M))


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
def test_the_cli_chooses_each_kernel_by_density_and_every_choice_computes_the_same(tmp_path: Path) -> None:
    """``export --format c`` measures each layer's input density on training images of the container's dataset and
    picks its kernel (``--kernels auto``), or takes ``dense`` / ``events``: the output and the README name each
    layer's kernel and density, and the three builds give the same logits bit for bit on the digits test split."""
    torch.manual_seed(0)
    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    spec["neuron"]["v_threshold"] = 0.1  # lively: some layers run dense under auto, some event by event
    model = SpikingNet(spec, timesteps=2).eval()
    binarize_(model, ["layers.conv2", "layers.conv4"])  # conv4's input is over half ones: dense under auto
    write_container(tmp_path / "m.albsnn", model, metadata={"dataset": "digits"})
    model = read_container(tmp_path / "m.albsnn").model
    train = load_split("digits", None, "train").as_float(torch.arange(256))
    densities = input_densities(model, train)
    test = load_split("digits", None, "test").as_float()
    test.numpy().tofile(tmp_path / "images.f32")
    (tmp_path / "main.c").write_text(_HARNESS)
    logits = {}
    for kernels in ("auto", "dense", "events"):
        folder = tmp_path / kernels
        result = run_cli(
            ["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(folder), "--kernels", kernels]
        )
        assert f"kernels: {kernels}, input densities measured on 256 digits training images" in result.stdout
        chosen = _kernel_lines(result.stdout)
        assert set(chosen) == {op.label.split(" ")[0] for op in plan_model(model).ops if isinstance(op, ConvOp)}
        expected = {name: op.function for name, op in _over_bits(model, calibration=train, kernels=kernels).items()}
        assert {name: chosen[name] for name in expected} == expected
        for name in expected:  # the density each was chosen by, in the output and in the README
            assert f"(input density {densities[name]:.3f})" in result.stdout
            assert f"`{expected[name]}` (input density {densities[name]:.3f}) |" in (folder / "README.md").read_text()
        binary = tmp_path / f"{kernels}.bin"
        sources = [str(folder / "albsnn_model.c"), str(folder / "albsnn_kernels.c")]
        subprocess.run(
            ["cc", "-std=c99", "-O2", "-I", str(folder), str(tmp_path / "main.c"), *sources, "-o", str(binary)],
            check=True,
        )
        subprocess.run([str(binary), str(tmp_path / "images.f32"), str(tmp_path / f"{kernels}.f32")], check=True)
        logits[kernels] = np.fromfile(tmp_path / f"{kernels}.f32", np.float32).reshape(len(test), -1)
    auto = {op.variant for op in _over_bits(model, calibration=train).values()}
    assert auto == {"dense", "events"}, densities  # a mix, so that auto differs from both
    assert {op.variant for op in _over_bits(model, calibration=train, kernels="dense").values()} == {"dense"}
    np.testing.assert_array_equal(logits["auto"], logits["dense"])
    np.testing.assert_array_equal(logits["events"], logits["dense"])
    with torch.inference_mode():
        reference = model(test).numpy()
    assert (logits["auto"].argmax(1) == reference.argmax(1)).mean() >= 0.999


def test_the_cli_refuses_an_unknown_kernel_choice_in_one_line(tmp_path: Path) -> None:
    """A bad ``--kernels`` value, or one given for another format, exits 2 with one line and writes nothing."""
    write_container(tmp_path / "m.albsnn", _two_kinds())
    result = run_cli(
        ["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "c"), "--kernels", "fast"], 2
    )
    assert result.stderr.count("\n") == 1 and "Invalid value for '--kernels': 'fast' is not one of" in result.stderr
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "m.onnx"), "--kernels", "dense"], 2)
    assert result.stderr.count("\n") == 1 and "applies to --format c only" in result.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "m.onnx").exists()


def test_the_cli_exports_without_calibration_images(tmp_path: Path) -> None:
    """Without a dataset in the container (or with ``--calibration-images 0``) spike maps are taken as sparse:
    the files are those of ``export_c`` without calibration, and the output says so."""
    model = _two_kinds()
    write_container(tmp_path / "m.albsnn", model, metadata={"dataset": "digits"})
    result = run_cli(
        ["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "c"), "--calibration-images", "0"]
    )
    assert "kernels: auto, no calibration images (--calibration-images 0)" in result.stdout
    expected = export_c(read_container(tmp_path / "m.albsnn").model, tmp_path / "reference")
    written = {name: (tmp_path / "c" / name).read_text() for name in expected.files}
    assert written == expected.files
    assert all(layer.density is None for layer in expected.kernels)


_HARNESS = r"""
#include <stdio.h>
#include "albsnn_model.h"

int main(int argc, char **argv)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    const size_t n = sizeof pixels / sizeof pixels[0];
    FILE *in, *out;
    if (argc < 3 || (in = fopen(argv[1], "rb")) == NULL || (out = fopen(argv[2], "wb")) == NULL) {
        return 2;
    }
    while (fread(pixels, sizeof pixels[0], n, in) == n) {
        if (albsnn_infer(pixels, logits) != 0) {
            return 3;
        }
        fwrite(logits, sizeof logits[0], ALBSNN_NUM_CLASSES, out);
    }
    return fclose(in) | fclose(out);
}
"""


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
def test_one_step_kernels_over_large_counts_match_the_dense_ones(tmp_path: Path) -> None:
    """One time step over a 3 x 3 average pool of spikes (counts up to 9 in four planes, so the 1-bit event kernel
    lists them 16 columns at a time) into 16 output channels (four outputs share a 64-bit word): the event and the
    dense kernels give the same logits bit for bit, under ASan and UBSan, and PyTorch's predictions."""
    from tests.test_c_export import SANITIZE, _compile, _export, _lively, _run

    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 3, "stride": 1},
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "gap"},
        {"type": "linear", "out_features": 10},
    ]
    model = _lively(spec, 1, load_split("digits", None, "train").as_float()[:256])
    images = load_split("digits", None, "test").as_float()[:64]
    for weights in ("packed", "float"):
        logits = {}
        for kernels in ("dense", "events"):
            _export(model, tmp_path / kernels, weights, kernels)
            binary = _compile(tmp_path / kernels, SANITIZE, tmp_path / f"{kernels}.bin")
            logits[kernels], stderr = _run(binary, images, tmp_path)
            assert stderr == ""
        counts = next(
            op for op in plan_model(model, weights=weights).ops if isinstance(op, ConvOp) and op.inp.planes > 1
        )
        assert counts.inp.planes == 4 and counts.lif is not None and counts.out.steps == 1
        np.testing.assert_array_equal(logits["events"], logits["dense"])
        with torch.inference_mode():
            reference = model(images).numpy()
        assert (logits["events"].argmax(1) == reference.argmax(1)).mean() >= 0.95
