"""Synaptic operations, bytes moved and the energy estimate, counted by hand on constructed networks (issue 27).

The hand network (``hand_net``, T = 2, IF neurons with a hard reset at threshold 1):

    image 1x3x3 -> conv1 (1->2, 1x1, weights 1.0 and 0.5) -> lif1 -> conv2 (2->1, 3x3, pad 1, all weights 1)
    -> lif2 -> flatten -> linear1 (9->3, all weights 1, bias)

Pixels are 0, 0.5 or 1 (mean 0, std 1: the layers see them as they are). conv1 runs once, ahead of
the first neuron; lif1 then charges the same X at both steps: channel 0 (X = x) spikes at steps
1 and 2 for x = 1, at step 2 for x = 0.5; channel 1 (X = x / 2) spikes at step 2 for x = 1 only.
With conv2's weights all 1, lif2 spikes at a position at a step iff any lif1 spike of that step lies
in its 3x3 window. A spike at a corner of the 3x3 map reaches 4 outputs of conv2, at an edge 6, at
the centre 9; every lif2 spike reaches the 3 outputs of linear1.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clihelp import run_cli
from report_samples import make_result
from rich.console import Console
from test_text_escaping import assert_terminal_safe
from torch import nn

from albsnn_compress.binarize import binarize_
from albsnn_compress.cli.terminal import render_terminal
from albsnn_compress.errors import CompressionError, ReportError
from albsnn_compress.operations import (
    AC_PJ,
    DEFINITIONS,
    ENERGY_LABEL,
    MAC_PJ,
    check_countable,
    count_operations,
    operations_section,
)
from albsnn_compress.report import (
    build_report,
    load_report,
    render_html,
    render_markdown,
    render_text,
    validate_report,
)
from albsnn_compress.snn.fields import Field, finite_float
from albsnn_compress.snn.layer_types import LayerType, registered, same_shape
from albsnn_compress.snn.onnx_mapping import linear_onnx
from albsnn_compress.snn.spec import SpikingNet

HAND_SPEC = {
    "name": "hand",
    "input": {"shape": [1, 3, 3]},
    "num_classes": 3,
    "neuron": {"leak": False, "reset": "hard", "v_threshold": 1.0},
    "layers": [
        {"type": "conv", "out_channels": 2, "kernel_size": 1},
        {"type": "lif"},
        {"type": "conv", "out_channels": 1, "kernel_size": 3, "padding": 1},
        {"type": "lif"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 3},
    ],
}

IMAGE_A = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]  # analog: 0, 0.5 and 1
IMAGE_B = [[0.5] * 3] * 3  # analog
IMAGE_C = [[1.0] * 3] * 3  # only 0 and 1: conv1 sees a binary input, so its operations are ACs


def hand_net() -> SpikingNet:
    net = SpikingNet(HAND_SPEC, timesteps=2)
    with torch.no_grad():
        net.layers.conv1.weight.copy_(torch.tensor([1.0, 0.5]).view(2, 1, 1, 1))
        net.layers.conv2.weight.fill_(1.0)
        net.layers.linear1.weight.fill_(1.0)
    return net


def hand_images() -> torch.Tensor:
    return torch.tensor([IMAGE_A, IMAGE_B, IMAGE_C]).unsqueeze(1)


# Per image, by hand (see the module docstring):
#   conv1 (fan-out 2 per nonzero pixel): A 2 pixels -> 4 MAC; B 9 -> 18 MAC; C 9 -> 18 AC (binary input)
#   lif1 spikes: A t1 ch0(0,0); t2 ch0(0,0), ch1(0,0), ch0(1,1)   -> 4 spikes
#                B t2 ch0 everywhere                                -> 9 spikes
#                C t1 ch0 everywhere; t2 ch0 and ch1 everywhere     -> 27 spikes
#   conv2 AC:    A t1 4; t2 4 + 4 + 9 = 17 -> 21
#                B all 9 positions once: 4 corners x 4 + 4 edges x 6 + centre 9 = 49
#                C 3 maps of all 9 positions: 3 x 49 = 147
#   lif2 spikes: A t1 the 4 windows holding (0,0), t2 all 9 (the centre reaches every window) -> 13
#                B t2 all 9 -> 9;  C t1 and t2 all 9 -> 18
#   linear1 AC:  3 per lif2 spike: 39, 27, 54
HAND = {
    "layers.conv1": {"steps": 1, "fan_in": 1, "outputs": 18, "ac": 18 / 3, "mac": (4 + 18) / 3, "spiking": 1},
    "layers.conv2": {"steps": 2, "fan_in": 18, "outputs": 9, "ac": (21 + 49 + 147) / 3, "mac": 0.0, "spiking": 3},
    "layers.linear1": {"steps": 2, "fan_in": 9, "outputs": 3, "ac": (39 + 27 + 54) / 3, "mac": 0.0, "spiking": 3},
}
RATES = {  # nonzero input elements / (images x steps x elements per step)
    "layers.conv1": (2 + 9 + 9) / (3 * 1 * 9),
    "layers.conv2": (4 + 9 + 27) / (3 * 2 * 18),
    "layers.linear1": (13 + 9 + 18) / (3 * 2 * 9),
}


def test_the_hand_network_counts_what_was_computed_by_hand() -> None:
    ops = count_operations(hand_net(), hand_images(), batch_size=2)  # batches of 2 and 1: nothing per batch
    assert [layer.name for layer in ops.layers] == list(HAND)
    for layer in ops.layers:
        hand = HAND[layer.name]
        assert (layer.steps, layer.fan_in, layer.outputs_per_step) == (hand["steps"], hand["fan_in"], hand["outputs"])
        assert layer.dense == hand["fan_in"] * hand["outputs"] * hand["steps"]
        assert layer.ac == pytest.approx(hand["ac"], abs=1e-12)
        assert layer.mac == pytest.approx(hand["mac"], abs=1e-12)
        assert (layer.images, layer.spiking_images) == (3, hand["spiking"])
        assert layer.input_rate == pytest.approx(RATES[layer.name], abs=1e-12)
        assert layer.energy_pj == pytest.approx(layer.ac * 0.9 + layer.mac * 4.6)
    assert [layer.input for layer in ops.layers] == ["mixed", "spikes", "spikes"]
    assert [layer.dense for layer in ops.layers] == [18, 324, 54]  # conv1 runs once: 1 x 18 x 1
    assert ops.dense == 396
    assert ops.ac == pytest.approx((18 + 217 + 120) / 3) and ops.mac == pytest.approx(22 / 3)
    assert ops.synaptic_ops == pytest.approx((18 + 217 + 120 + 22) / 3)
    assert ops.energy_pj == pytest.approx(355 / 3 * 0.9 + 22 / 3 * 4.6)
    assert ops.neuron_updates == 18 * 2 + 9 * 2 and ops.batch_norm_elements == 0
    # bytes: weights read once per step (float32; linear1 has 27 weights and 3 biases); inputs 4 bytes each when
    # analog and 1 bit when spikes (conv1: A and B analog, C binary); outputs 4 bytes each, every step
    weight_bytes = {"layers.conv1": 2 * 4 * 1, "layers.conv2": 18 * 4 * 2, "layers.linear1": 30 * 4 * 2}
    activation_bytes = {
        "layers.conv1": (9 * 4 + 9 * 4 + 9 / 8) / 3 + 18 * 4,
        "layers.conv2": 18 * 2 / 8 + 9 * 2 * 4,
        "layers.linear1": 9 * 2 / 8 + 3 * 2 * 4,
    }
    for layer in ops.layers:
        assert layer.weight_bytes == weight_bytes[layer.name]
        assert layer.activation_bytes == pytest.approx(activation_bytes[layer.name])
    assert ops.bytes_moved == pytest.approx(sum(weight_bytes.values()) + sum(activation_bytes.values()))


def test_a_binarized_layer_does_the_same_acs_and_reads_fewer_bytes() -> None:
    net = hand_net()
    compressed = binarize_(copy.deepcopy(net), ["layers.conv2"])  # all weights 1: alpha 1, the same spikes
    before, after = count_operations(net, hand_images()), count_operations(compressed, hand_images())
    conv2_before, conv2_after = before.layers[1], after.layers[1]
    assert (conv2_before.weight_bits, conv2_after.weight_bits) == (32, 1)
    assert conv2_after.ac == conv2_before.ac == pytest.approx(217 / 3)  # an add of +alpha is an AC
    assert conv2_after.weight_bytes == (18 + 32) / 8 * 2  # 18 sign bits and one float32 scale, read at both steps
    section = operations_section(before, after, split="test", image_limit=1000)
    saved = section["saved_percent"]
    assert saved["synaptic_ops"] == 0 and saved["energy_pj"] == 0
    expected = 100 * (before.weight_bytes - after.weight_bytes) / before.weight_bytes
    assert saved["weight_bytes"] == pytest.approx(expected)
    assert section["energy"] == {
        "ac_pj": 0.9,
        "mac_pj": 4.6,
        "label": "estimate (45 nm, Horowitz 2014)",
        "source": section["energy"]["source"],
    }
    assert "Horowitz" in section["energy"]["source"] and "ISSCC 2014" in section["energy"]["source"]
    assert section["definitions"] == DEFINITIONS and "NeuroBench" in section["definitions"]["neurobench"]
    assert (section["split"], section["images"], section["image_limit"]) == ("test", 3, 1000)


def test_zero_weights_are_skipped_and_layers_ahead_of_any_neuron_run_once() -> None:
    spec = {
        "name": "flat",
        "input": {"shape": [1, 1, 2]},
        "num_classes": 2,
        "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2, "bias": False}],
    }
    net = SpikingNet(spec, timesteps=4)  # no neuron: every layer runs once whatever T is
    with torch.no_grad():
        net.layers.linear1.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))  # input 0 reaches 2 outputs, 1 one
    images = torch.tensor([[[[0.5, 0.5]]], [[[0.0, 0.5]]]])
    (layer,) = count_operations(net, images).layers
    assert layer.steps == 1 and layer.dense == 2 * 2 * 1  # zero weights are in the dense count (NeuroBench too)
    assert layer.mac == pytest.approx((3 + 1) / 2) and layer.ac == 0  # image 1: 2 + 1; image 2: input 1 only: 1
    assert layer.input == "analog" and layer.input_rate == pytest.approx(3 / 4)


def neurobench_counts(module: nn.Conv2d, x: torch.Tensor) -> tuple[float, float]:
    """NeuroBench's reading (stateless_layer_macs): the layer with nonzero weights set to 1 and no bias, run on the
    input with nonzero values set to 1 (effective) or on all ones (Dense); the outputs summed."""
    mask = (module.weight.detach() != 0).to(torch.float64)
    args = (None, module.stride, module.padding, module.dilation, module.groups)
    effective = F.conv2d((x != 0).to(torch.float64), mask, *args).sum()
    dense = F.conv2d(torch.ones_like(x, dtype=torch.float64), torch.ones_like(mask), *args).sum()
    return float(effective), float(dense)


@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 0, 1), (2, 1, 2), (1, 2, 4)])
def test_effective_operations_agree_with_neurobenchs_reading(stride: int, padding: int, groups: int) -> None:
    torch.manual_seed(stride + padding + groups)
    spec = {
        "name": "strided",
        "input": {"shape": [4, 7, 6]},
        "num_classes": 2,
        "layers": [
            {"type": "lif"},  # the image becomes spikes, so the conv after it does ACs
            {"type": "conv", "out_channels": 8, "stride": stride, "padding": padding, "groups": groups},
            {"type": "gap"},
            {"type": "flatten"},
            {"type": "linear", "out_features": 2},
        ],
    }
    net = SpikingNet(spec, timesteps=3)
    with torch.no_grad():
        net.layers.conv1.weight[net.layers.conv1.weight.abs() < 0.05] = 0.0  # a few zero weights
    images = torch.rand(5, 4, 7, 6) * 2.5
    conv = next(layer for layer in count_operations(net, images).layers if layer.name == "layers.conv1")
    with torch.no_grad():
        spikes = net.layers.lif1(images.unsqueeze(0).expand(3, -1, -1, -1, -1).contiguous())
    effective, dense = neurobench_counts(net.layers.conv1, spikes.flatten(0, 1))
    assert conv.input == "spikes" and conv.mac == 0
    assert conv.ac == pytest.approx(effective / 5, rel=1e-12)
    assert conv.dense == conv.fan_in * conv.outputs_per_step * 3
    if padding == 0:
        assert conv.dense == pytest.approx(dense / 5)  # no padding: the same dense count
    else:
        assert conv.dense > dense / 5  # ours counts the zero-padded border positions, NeuroBench's Dense does not


def test_the_model_is_left_as_it_was() -> None:
    net = hand_net().train()
    hooks = sum(len(module._forward_hooks) for module in net.modules())
    count_operations(net, hand_images())
    assert net.training and sum(len(module._forward_hooks) for module in net.modules()) == hooks
    with pytest.raises(CompressionError, match="at least one image"):
        count_operations(net, hand_images()[:0])


class _Gain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))


def test_a_weighted_layer_type_without_a_counter_is_refused_by_name() -> None:
    record = LayerType(
        name="gain",
        modules=(_Gain,),
        fields={"init": Field(1.0, finite_float)},
        build=lambda _layer, _shape, _neuron: _Gain(),
        output_shape=same_shape,
        onnx=linear_onnx,
        binarizable=("weight",),
    )
    refusal = r"layer g \(gain\) has weights.*SYNAPSE_COUNTERS"
    with registered(record):
        with pytest.raises(CompressionError, match=refusal):
            check_countable(nn.ModuleDict({"g": _Gain()}))  # what a compress run checks before its search
        with pytest.raises(CompressionError, match=refusal):
            count_operations(nn.ModuleDict({"g": _Gain()}), hand_images())
    check_countable(hand_net())


# --- in the report ---------------------------------------------------------------------------


def hand_report() -> dict:
    net = hand_net()
    compressed = binarize_(copy.deepcopy(net), ["layers.conv2"])
    section = operations_section(
        count_operations(net, hand_images()), count_operations(compressed, hand_images()), split="test"
    )
    result = make_result(compressed, ["layers.conv2"], ["layers.conv2"])
    return build_report(result, versions={"albsnn-compress": "test"}, operations=section)


def test_the_report_carries_the_counts_and_every_form_shows_them() -> None:
    report = hand_report()
    operations = report["operations"]
    assert report["schema_version"] == 3
    conv2 = operations["compressed_model"]["layers"][1]
    assert conv2["name"] == "layers.conv2" and conv2["input"] == "spikes" and conv2["weight_bits"] == 1
    assert conv2["dense"] == 324 and conv2["ac"] == pytest.approx(217 / 3)
    total = operations["input_model"]["total"]
    assert total["dense"] == 396 and total["synaptic_ops"] == pytest.approx(377 / 3)
    assert total["energy_pj"] == pytest.approx(355 / 3 * AC_PJ + 22 / 3 * MAC_PJ)
    text = render_text(report, width=400)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("conv2 ") and "spikes" in line)
    assert all(cell in row for cell in ("spikes", "32 -> 1", "324", "37.04%", "72.3"))
    assert any(line.startswith("total") and "396" in line and "118" in line for line in lines)  # AC 355/3
    assert any("synaptic operations (AC + MAC)" in line and "126" in line and "0.00%" in line for line in lines)
    assert any(f"energy, {ENERGY_LABEL}" in line for line in lines)
    weight_row = next(line for line in lines if line.startswith("weight bytes read"))
    assert "392 B" in weight_row and "260.5 B" in weight_row  # 8 + 144 + 240 -> 8 + 12.5 + 240
    assert "AC × 0.9 pJ + MAC × 4.6 pJ" in text
    markdown = render_markdown(report)
    assert "## Cost per inference: input vs compressed model" in markdown and "## Operations per layer" in markdown
    assert "Horowitz, Computing" in markdown and "NeuroBench" in markdown  # the definitions, in full
    page = render_html(report, charts=False)
    assert 'id="cost"' in page and 'id="operations"' in page and "Energy (estimate)" in page
    console = Console(file=io.StringIO(), width=200)
    render_terminal(report, console, brief=True)
    terminal = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Cost per inference" in terminal and "Operations per layer" in terminal and "72.3" in terminal


def test_the_schema_checks_that_the_operations_add_up() -> None:
    report = hand_report()
    broken = copy.deepcopy(report)
    broken["operations"]["compressed_model"]["total"]["ac"] += 1
    with pytest.raises(ReportError, match=r"at /operations/compressed_model/total/ac: layers sum to"):
        build_report(make_result(hand_net(), [], []), operations=broken["operations"])
    broken = copy.deepcopy(report)
    broken["operations"]["input_model"]["layers"][0]["energy_pj"] *= 2
    with pytest.raises(ReportError, match=r"layers/0/energy_pj: .* recorded constants"):
        build_report(make_result(hand_net(), [], []), operations=broken["operations"])
    broken = copy.deepcopy(report)
    broken["operations"]["input_model"]["layers"][0]["input"] = "photons"
    with pytest.raises(ReportError, match=r"layers/0/input: expected one of"):
        build_report(make_result(hand_net(), [], []), operations=broken["operations"])
    broken = copy.deepcopy(report)
    broken["operations"]["input_model"]["layers"].pop()
    with pytest.raises(ReportError, match=r"at /operations: the input and compressed models list different layers"):
        build_report(make_result(hand_net(), [], []), operations=broken["operations"])


def test_text_in_the_section_is_shown_literally_in_every_form() -> None:
    """Names, the split, the energy label and source and the definitions come from the file: escaped everywhere."""
    hostile = "\x1b]0;owned\x07<script>|*$x$\u202e\n# h"
    report = hand_report()
    operations = report["operations"]
    for model in ("input_model", "compressed_model"):
        for layer in operations[model]["layers"]:
            layer["name"] = hostile + layer["name"]
            layer["type"] = hostile
    operations["split"] = operations["energy"]["label"] = operations["energy"]["source"] = hostile
    operations["definitions"] = {key: hostile for key in operations["definitions"]}
    validate_report(report)
    console = Console(file=io.StringIO(), width=200)
    render_terminal(report, console)
    for form in (render_text(report), console.file.getvalue(), render_markdown(report)):  # type: ignore[attr-defined]
        assert_terminal_safe(form)
        assert "owned" in form
    assert "\\x1b]0;owned\\x07<script>" in render_text(report)  # the escape written out, as text
    page = render_html(report, charts=False)
    assert_terminal_safe(page)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in render_markdown(report)


# --- end to end ------------------------------------------------------------------------------


def test_every_compress_run_reports_its_cost_in_every_form(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        [str(digits_checkpoint), "--budget", "100", "--strategy", "all", "--epochs", "0.1", "--quiet", "-o", str(out)]
    )
    assert "Cost per inference: input vs compressed model" in result.stdout  # the terminal, at the run's end
    assert "Operations per layer" in result.stdout and "multiply-accumulates (MAC)" in result.stdout
    report = load_report(out / "report.json")
    operations = report["operations"]
    images = min(1000, operations["images"])
    assert operations["split"] == "test" and operations["images"] == images and operations["image_limit"] == 1000
    before, after = operations["input_model"], operations["compressed_model"]
    assert [layer["name"] for layer in before["layers"]] == [f"layers.conv{i}" for i in range(1, 6)]
    assert before["layers"][0]["input"] == "analog" and before["layers"][0]["steps"] == 1  # the image: MACs, once
    assert before["layers"][1]["input"] == "spikes" and before["layers"][1]["mac"] == 0
    assert before["layers"][3]["input"] == "analog"  # after the average pooling: MACs
    binarized = {layer["name"] for layer in after["layers"] if layer["weight_bits"] == 1}
    assert binarized == set(report["search"]["binarized"]) == {"layers.conv2", "layers.conv3", "layers.conv4"}
    assert before["total"]["dense"] == after["total"]["dense"] > before["total"]["synaptic_ops"] > 0
    assert after["total"]["weight_bytes"] < before["total"]["weight_bytes"] / 10
    assert json.loads((out / "report.json").read_text())["operations"] == operations
    page = (out / "report.html").read_text()
    assert 'id="cost"' in page and 'id="operations"' in page and "estimate (45 nm, Horowitz 2014)" in page
    markdown = render_markdown(report)
    assert "## Cost per inference" in markdown and "## Operations per layer" in markdown
    shown = run_cli(["report", str(out / "report.json")]).stdout
    assert "Cost per inference" in shown and "Operations per layer" in shown
