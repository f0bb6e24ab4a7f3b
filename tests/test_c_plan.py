"""The C plan: every neuron variant has a C form; inspect prints its flash and RAM, or why there is none; the kernel
of each layer over spikes follows its measured input density, deterministically."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from albsnn_compress.binarize import binarize_
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.c.export import export_c
from albsnn_compress.formats.c.ops import ConvOp
from albsnn_compress.formats.c.plan import EVENT_DENSITY, RESET_C, input_densities, plan_model
from albsnn_compress.formats.c.source import render_files
from albsnn_compress.formats.container.file import write_container
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
