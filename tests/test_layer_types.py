"""The layer-type registry: every built-in record tells the truth, and a new type is one entry.

The throwaway type ``scale`` (a learned per-channel gain, ``y = g * x``) is
registered for one test and flows through everything that dispatches on the
registry: the spec (defaults, checks, auto names), the model, storage
accounting, the container (write, validating read, bit-exact outputs) and the
ONNX export (onnxruntime agrees with PyTorch). A throwaway reset rule does the
same for a neuron variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from albsnn_compress.errors import SpecError
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.formats.onnx.export import build_onnx_model
from albsnn_compress.snn.fields import Field, finite_float
from albsnn_compress.snn.layer_types import (
    LAYER_TYPES,
    LayerType,
    is_binarizable,
    layer_type,
    layer_type_of,
    register_layer_type,
    registered,
    same_shape,
)
from albsnn_compress.snn.layers import fold_time
from albsnn_compress.snn.neurons import LIF, RESET_MODES, ResetMode
from albsnn_compress.snn.onnx_mapping import GraphEmitter, as_array
from albsnn_compress.snn.spec import SpikingNet, normalize_spec, spec_bounds
from albsnn_compress.storage import layer_storage


class TimeScale(nn.Module):
    """A per-channel gain over ``[T, B, C, ...]``."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_time(lambda y: y * self.gain.view(1, -1, *[1] * (y.dim() - 2)), x)


def _scale_onnx(graph: GraphEmitter, name: str, module: TimeScale, x: str) -> str:
    gain = as_array(module.gain).reshape(1, -1, 1, 1)
    return graph.node("Mul", [x, graph.initializer(f"{name}.gain", gain)], f"{name}.y")


SCALE = LayerType(
    name="scale",
    modules=(TimeScale,),
    fields={"init": Field(1.0, finite_float)},
    build=lambda layer, shape, _neuron: TimeScale(shape[0], layer["init"]),
    output_shape=same_shape,
    parameters=lambda _layer, shape: shape[0],
    input_ranks=(3,),
    onnx=_scale_onnx,
)


def _spec(extra: list[dict[str, Any]], neuron: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "input": {"shape": [1, 8, 8]},
        "num_classes": 3,
        "neuron": neuron or {},
        "layers": [
            {"type": "conv", "out_channels": 4, "padding": 1},
            *extra,
            {"type": "bn"},
            {"type": "lif"},
            {"type": "conv", "out_channels": 4, "padding": 1},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "conv", "out_channels": 3, "kernel_size": 1},
            {"type": "gap"},
        ],
    }


def _trained_looking(model: SpikingNet) -> SpikingNet:
    """Random weights and BN statistics big enough that neurons fire, eval mode."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model.eval()


def _onnx_logits(model: SpikingNet, images: torch.Tensor) -> np.ndarray:
    proto = build_onnx_model(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images.numpy()})[0]


def test_a_new_layer_type_flows_through_spec_storage_container_and_onnx(tmp_path: Path) -> None:
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with registered(SCALE):
        spec = normalize_spec(_spec([{"type": "scale", "init": 2}]))
        assert spec["layers"][1] == {"type": "scale", "name": "scale1", "init": 2.0}
        with pytest.raises(SpecError, match="layer scale1 init must be a finite number"):
            normalize_spec(_spec([{"type": "scale", "init": "nan"}]))
        model = _trained_looking(SpikingNet(spec, timesteps=2))
        assert isinstance(model.layers.scale1, TimeScale) and layer_type_of(model.layers.scale1) is SCALE
        assert spec_bounds(spec)[0] == sum(v.numel() for k, v in model.state_dict().items() if "num_batches" not in k)
        row = next(r for r in layer_storage(model, []) if r.name == "layers.scale1")
        assert (row.kind, row.params, row.binarizable, row.bits_after) == ("TimeScale", 4, False, 4 * 32)

        path = tmp_path / "scale.albsnn"
        write_container(path, model)
        loaded = read_container(path).model
        with torch.no_grad():
            expected = model(images)
            assert torch.equal(loaded(images), expected)
        np.testing.assert_allclose(_onnx_logits(model, images), expected.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(SpecError, match="unknown layer type 'scale'"):
        normalize_spec(_spec([{"type": "scale"}]))  # gone after the block


def test_a_new_reset_rule_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``none``: the membrane keeps integrating after a spike (no reset at all)."""
    mode = ResetMode(update=lambda _neuron, h, _spike: h, onnx=lambda _graph, _neuron, h, _spike, _hint: h)
    monkeypatch.setitem(RESET_MODES, "none", mode)
    model = _trained_looking(SpikingNet(_spec([], neuron={"reset": "none", "tau": 1.5}), timesteps=4))
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        steps = model.forward_steps(images)
        logits = steps.mean(0)
    lif = model.layers.lif1
    assert lif.reset == "none"
    inputs = torch.rand(3, 5) * 2
    v, spikes = torch.zeros(5), []
    for t in range(3):  # the definition: H_t = V + (X - V) / tau, S = H >= 1, V = H
        v = v + (inputs[t] - v) / 1.5
        spikes.append((v >= 1.0).float())
    assert torch.equal(lif(inputs.unsqueeze(1)).squeeze(1), torch.stack(spikes))
    np.testing.assert_allclose(_onnx_logits(model, images), logits.numpy(), rtol=1e-5, atol=1e-5)


def test_registering_a_taken_name_is_refused() -> None:
    with pytest.raises(SpecError, match="'conv' is already registered"):
        register_layer_type(LAYER_TYPES["conv"])


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (
            {"type": "conv", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 2, "bias": True},
            (4, 9, 7),
        ),
        ({"type": "linear", "out_features": 5}, (12,)),
        ({"type": "bn"}, (4, 6, 6)),
        ({"type": "bn"}, (12,)),
        ({"type": "lif"}, (4, 6, 6)),
        ({"type": "avgpool", "kernel_size": 3, "stride": 2}, (4, 9, 7)),
        ({"type": "maxpool"}, (4, 9, 7)),
        ({"type": "gap"}, (4, 5, 5)),
        ({"type": "flatten"}, (4, 3, 2)),
    ],
)
def test_each_record_computes_what_its_module_does(layer: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Output shape and parameter count from integers alone equal the built module's."""
    record = layer_type(layer["type"])
    full = {"name": "x", **{key: f.default for key, f in record.fields.items()}, **layer}
    module = record.build(full, shape, LIF().config()).eval()
    with torch.no_grad():
        out = module(torch.ones((2, 3, *shape)))
    assert tuple(out.shape[2:]) == record.output_shape(full, shape)
    stored = sum(v.numel() for k, v in module.state_dict().items() if "num_batches" not in k)
    assert stored == record.parameters(full, shape)
    assert layer_type_of(module) is record
    assert is_binarizable(module) == ("weight" in record.binarizable)


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        ({"type": "conv", "out_channels": 4, "kernel_size": 5}, (1, 3, 3), "kernel 5 with padding 0 does not fit"),
        ({"type": "conv", "out_channels": 3, "groups": 2}, (4, 8, 8), "groups=2 must divide"),
        ({"type": "avgpool", "kernel_size": 4}, (1, 3, 3), "kernel 4 with padding 0 does not fit"),
    ],
)
def test_records_refuse_layers_that_do_not_fit(layer: dict[str, Any], shape: tuple[int, ...], message: str) -> None:
    record = layer_type(layer["type"])
    full = {"name": "x", **{key: f.default for key, f in record.fields.items()}, **layer}
    with pytest.raises(SpecError, match=message):
        record.output_shape(full, shape)


def test_plain_torch_layers_dispatch_to_their_type() -> None:
    assert layer_type_of(nn.Conv2d(1, 2, 3)).name == "conv"
    assert layer_type_of(nn.BatchNorm1d(3)).label(nn.BatchNorm1d(3)) == "BatchNorm1d"
    assert layer_type_of(nn.ReLU()) is None and not is_binarizable(nn.ReLU())
