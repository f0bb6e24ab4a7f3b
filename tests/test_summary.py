"""``summary(model)``: the per-layer table agrees with storage accounting and reads like the spec."""

from __future__ import annotations

import torch
from torch import nn

from albsnn_compress.binarize import binarize_
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.summary import summary


def _model() -> SpikingNet:
    torch.manual_seed(0)
    return SpikingNet(make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25]))


def test_rows_follow_the_spec_with_shapes_and_precisions() -> None:
    model = binarize_(_model(), ["layers.conv2"])
    table = summary(model)
    assert [row.name for row in table.rows] == [f"layers.{layer['name']}" for layer in model.spec["layers"]]
    conv1, conv2 = table.rows[0], table.rows[3]
    assert (conv1.type, conv1.output_shape, conv1.weight_shape, conv1.precision) == (
        "Conv2d",
        [16, 8, 8],
        [16, 1, 3, 3],
        "float32",
    )
    assert conv1.bits == 16 * 9 * 32
    assert (conv2.name, conv2.precision) == ("layers.conv2", "1-bit")
    assert conv2.bits == 32 * 16 * 9 + 32 * 32  # one bit per weight plus a float32 scale per output channel
    lif = table.rows[2]
    assert (lif.type, lif.precision, lif.bits) == ("LIF", "-", 0)
    assert table.rows[-1].output_shape == [10]


def test_totals_and_saving_against_all_float() -> None:
    model = _model()
    plain = summary(model)
    assert plain.total_bits == plain.float_bits and plain.saved_fraction == 0.0
    binary = summary(binarize_(model, ["layers.conv2", "layers.conv3"]))
    assert binary.float_bits == plain.float_bits
    saved = plain.total_bits - binary.total_bits
    assert saved == sum((32 - 1) * n for n in (32 * 16 * 9, 32 * 32 * 9)) - 32 * (32 + 32)
    assert abs(binary.saved_fraction - saved / plain.float_bits) < 1e-12
    assert binary.as_dict()["total_bits"] == binary.total_bits


def test_text_table_names_every_layer_and_the_total() -> None:
    text = str(summary(binarize_(_model(), ["layers.conv2"])))
    lines = text.splitlines()
    assert lines[0] == "digits-small, T=1"
    assert any(line.startswith("layers.conv2 ") and "1-bit" in line for line in lines)
    assert lines[-1].startswith("total: ") and "% saved" in lines[-1]
    assert len({len(line) for line in lines[1:-1]}) == 1  # fixed width


def test_a_plain_torch_module_lists_its_storing_modules() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    table = summary(model)
    assert [(row.name, row.type, row.output_shape) for row in table.rows] == [
        ("0", "Conv2d", None),
        ("3", "Linear", None),
    ]
