"""The C plan: the neuron variants its kernels do not compute are refused, named; inspect prints its flash and RAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albsnn_compress.binarize import binarize_
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.c.export import export_c
from albsnn_compress.formats.c.plan import plan_model
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet
from tests.clihelp import run_cli


@pytest.mark.parametrize(
    ("neuron", "per_channel", "message"),
    [
        ({"leak": False}, [], "neuron setting leak=False has no C form"),
        ({"decay_input": False}, [], "neuron setting decay_input=False has no C form"),
        ({"strict_threshold": True}, [], "neuron setting strict_threshold=True has no C form"),
        ({}, ["tau"], r"neuron setting per_channel=\('tau',\) has no C form"),
        ({"reset": "soft_deferred"}, [], "reset rule 'soft_deferred' has no C form"),
    ],
)
def test_unsupported_neuron_variants_are_refused(
    tmp_path: Path, neuron: dict[str, Any], per_channel: list[str], message: str
) -> None:
    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    spec["neuron"].update(neuron)
    next(layer for layer in spec["layers"] if layer["type"] == "lif")["per_channel"] = per_channel
    with pytest.raises(ExportError, match=f"layer lif1: {message}"):
        export_c(SpikingNet(spec).eval(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inspect_prints_the_c_exports_flash_and_ram(tmp_path: Path) -> None:
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
    spec["neuron"]["leak"] = False
    write_container(tmp_path / "if.albsnn", SpikingNet(spec).eval())
    assert "not expressible: layer lif1: neuron setting leak=False" in " ".join(
        run_cli(["inspect", str(tmp_path / "if.albsnn")]).output.split()
    )
