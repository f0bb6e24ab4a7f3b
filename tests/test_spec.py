"""Architecture specs: round trips, presets, and clear errors for bad specs."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.presets import PRESETS, make_preset
from albsnn_compress.snn.spec import SpikingNet, normalize_spec


def _spec(name: str) -> dict:
    shape = [3, 32, 32] if name.startswith("cifar") else [1, 28, 28] if name.startswith("fmnist") else [1, 8, 8]
    return make_preset(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0])


@pytest.mark.parametrize("name", PRESETS)
def test_spec_model_spec_round_trip(name: str) -> None:
    spec = _spec(name)
    model = SpikingNet(json.loads(json.dumps(spec)), timesteps=2)
    assert model.spec == spec
    assert normalize_spec(model.spec) == model.spec
    assert SpikingNet(model.spec, 2).state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("timesteps", [1, 2, 4])
def test_forward_shapes(timesteps: int) -> None:
    model = SpikingNet(_spec("digits-small"), timesteps)
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert model.forward_steps(torch.rand(5, 1, 8, 8)).shape == (timesteps, 5, 10)


def _every_step_forward(model: SpikingNet, images: torch.Tensor) -> torch.Tensor:
    """The forward pass as it was: every layer on all T copies of the image."""
    normalized = (images - model.input_mean) / model.input_std
    return model.layers(normalized.unsqueeze(0).expand(model.timesteps, *normalized.shape)).mean(dim=0)


@pytest.mark.parametrize("name", ["digits-small", "fmnist-vgg"])
def test_layers_before_the_first_neuron_run_once_and_give_what_every_step_gives(name: str) -> None:
    torch.manual_seed(0)
    shared = SpikingNet(_spec(name), timesteps=3).train()
    every_step = copy.deepcopy(shared)
    assert [layer["type"] for layer in shared.spec["layers"][: shared.shared_layers]] == ["conv", "bn"]
    first_conv_steps: list[int] = []
    shared.layers[0].register_forward_pre_hook(lambda _module, args: first_conv_steps.append(args[0].shape[0]))
    images = torch.rand(16, *shared.spec["input"]["shape"], generator=torch.Generator().manual_seed(1))
    labels = torch.arange(16) % 10
    outputs = []
    for model, forward in ((shared, SpikingNet.forward), (every_step, _every_step_forward)):
        logits = forward(model, images)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        outputs.append(logits.detach())
    assert first_conv_steps == [1]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    twins = dict(every_step.named_parameters())
    for key, param in shared.named_parameters():
        torch.testing.assert_close(param.grad, twins[key].grad, rtol=1e-4, atol=1e-6, msg=key)
    norm, twin_norm = shared.layers[1], every_step.layers[1]
    torch.testing.assert_close(norm.running_mean, twin_norm.running_mean)
    # unbiased variance over B*H*W values instead of T*B*H*W identical copies: 1e-4 relative at most here
    torch.testing.assert_close(norm.running_var, twin_norm.running_var, rtol=1e-3, atol=0.0)


def test_a_net_without_neurons_still_returns_every_step() -> None:
    spec = {
        "input": {"shape": [1, 8, 8], "mean": [0.5], "std": [0.25]},
        "num_classes": 10,
        "layers": [{"type": "conv", "out_channels": 10}, {"type": "gap"}],
    }
    model = SpikingNet(spec, timesteps=2)
    assert model.shared_layers == 2
    steps = model.forward_steps(torch.rand(3, 1, 8, 8))
    assert steps.shape == (2, 3, 10) and torch.equal(steps[0], steps[1])


def test_gap_head_has_no_fully_connected_layer() -> None:
    spec = _spec("fmnist-vgg")
    types = [layer["type"] for layer in spec["layers"]]
    assert "linear" not in types and types[-1] == "gap"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("layers"), "missing 'layers'"),
        (lambda s: s["layers"].append({"type": "dense"}), "unknown layer type 'dense'"),
        (lambda s: s["layers"][0].update(out_chanels=3), "unknown keys"),
        (lambda s: s["layers"][0].pop("out_channels"), "missing required key 'out_channels'"),
        (lambda s: s["layers"][0].update(out_channels=-4), "out_channels must be an integer >= 1"),
        (lambda s: s["layers"][0].update(out_channels=True), "out_channels must be an integer >= 1"),
        (lambda s: s["input"].update(shape=[1, 8]), "input shape must be"),
        (lambda s: s["input"].update(std=[0.0]), "std\\[0\\] must be a finite number > 0"),
        (lambda s: s.update(num_classes=7), "expected \\[7\\]"),
        (lambda s: s["layers"].insert(0, {"type": "linear", "out_features": 4}), "needs a flat input"),
        (lambda s: s["layers"][1].update(name="conv1"), "names must be unique"),
        (
            lambda s: s.update(neuron={"v_threshold": "nan"}),
            "spec neuron v_threshold must be a finite number, got 'nan'",
        ),
        (lambda s: s.update(neuron={"v_threshold": float("inf")}), "v_threshold must be a finite number"),
        (lambda s: s.update(neuron={"tau": 0.5}), "spec neuron tau must be a finite number >= 1"),
        (lambda s: s.update(neuron={"reset": "sideways"}), "spec neuron reset must be one of \\['hard', 'soft'"),
        (
            lambda s: s.update(neuron={"surrogate": {"name": "arctan", "alpha": float("nan")}}),
            "surrogate alpha must be a finite number > 0",
        ),
        (lambda s: s["input"].update(std=[float("nan")]), "std\\[0\\] must be a finite number > 0"),
        (lambda s: s["input"].update(mean=[True]), "mean\\[0\\] must be a finite number"),
        (lambda s: s["layers"][0].update(bias=1), "layer conv1 bias must be true or false"),
        (lambda s: s["layers"][1].update(momentum=2.0), "layer bn1 momentum must be a number in \\(0, 1\\]"),
        (lambda s: s["layers"][1].update(eps=-1e-5), "layer bn1 eps must be a finite number > 0"),
        (lambda s: s["layers"][0].update(kernel_size=99), "kernel 99 with padding 1 does not fit"),
    ],
)
def test_bad_specs_are_named(mutate, message: str) -> None:
    spec = _spec("digits-small")
    mutate(spec)
    with pytest.raises(SpecError, match=message):
        SpikingNet(spec)


def test_custom_spec_with_groups_and_fc_head() -> None:
    spec = {
        "input": {"shape": [1, 8, 8]},
        "num_classes": 3,
        "layers": [
            {"type": "conv", "out_channels": 8, "padding": 1},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "conv", "out_channels": 8, "padding": 1, "groups": 4, "bias": True},
            {"type": "lif"},
            {"type": "maxpool", "kernel_size": 2},
            {"type": "flatten"},
            {"type": "linear", "out_features": 3},
        ],
    }
    model = SpikingNet(spec)
    assert model.layers.conv2.groups == 4
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_lif_layers_override_the_neuron_and_hold_per_channel_settings() -> None:
    spec = _spec("digits-small")
    lifs = [layer for layer in spec["layers"] if layer["type"] == "lif"]
    lifs[0].update(neuron={"tau": 1.5, "leak": True}, per_channel=["v_threshold", "tau"])
    lifs[1].update(neuron={"leak": False, "reset": "soft"})
    model = SpikingNet(spec)
    first, second, third = (model.get_submodule(f"layers.{layer['name']}") for layer in lifs[:3])
    assert model.spec["layers"][2]["per_channel"] == ["tau", "v_threshold"]  # canonical order
    assert first.tau.shape == (16, 1, 1) and float(first.tau[0]) == 1.5 and first.per_channel == ("tau", "v_threshold")
    assert "layers.lif1.tau" in model.state_dict() and "layers.lif1.v_threshold" in model.state_dict()
    assert (second.leak, second.reset, second.tau) == (False, "soft", 2.0)  # the rest from the spec's neuron
    assert (third.leak, third.reset) == (True, "hard")
    assert normalize_spec(model.spec) == model.spec


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"neuron": {"tau": 0.2}}, "layer lif1 neuron tau must be a finite number >= 1"),
        ({"neuron": {"sharpness": 1}}, "layer lif1 neuron keys must be among"),
        (
            {"per_channel": ["v_reset"]},
            "layer lif1 per_channel must be a list of distinct settings among \\['tau', 'v_threshold'\\]",
        ),
        ({"per_channel": ["tau", "tau"]}, "per_channel must be a list of distinct settings"),
    ],
)
def test_bad_lif_overrides_are_named(update: dict, message: str) -> None:
    spec = _spec("digits-small")
    next(layer for layer in spec["layers"] if layer["type"] == "lif").update(update)
    with pytest.raises(SpecError, match=message):
        SpikingNet(spec)


@pytest.mark.parametrize(
    ("shape", "extra", "message"),
    [
        ([10**9, 1, 1], {"mean": [0.0], "std": [1.0]}, r"spec input shape\[0\] is more than 268435456"),
        ([10**9, 1, 1], {}, r"spec input shape\[0\] is more than 268435456"),
        ([10**20, 1, 1], {}, r"spec input shape\[0\] is more than 268435456"),  # was an OverflowError
        ([-(10**5000), 1, 1], {}, r"spec input shape\[0\] must be an integer >= 1, got an integer too large to print"),
        ([70_000, 1, 1], {}, r"spec input shape\[0\]: 70000 channels, at most 65536 allowed"),
        ([1, 20_000, 20_000], {}, r"spec input: shape \[1, 20000, 20000\] holds more than 268435456 elements"),
        ([3, 8, 8], {"mean": [0.0] * 1_000_000}, r"mean must be a list of 3 numbers, got a list of 1000000 items$"),
        ([True, 8, 8], {}, r"spec input shape\[0\] must be an integer >= 1, got True"),
        ([10**9], {"mean": [0.0] * 1_000_000}, r"spec input shape\[0\] is more than 268435456"),
        (
            [1 << 27],
            {"std": [1.0] * 1_000_000},
            r"std must be a list of 1 number \(for every feature; one per feature only up to 65536 features\), "
            r"got a list of 1000000 items$",
        ),
    ],
    ids=[
        "1e9-channels-with-stats",
        "1e9-channels",
        "1e20-channels",
        "huge-negative",
        "70000-channels",
        "400-megapixels",
        "a-million-means",
        "bool",
        "1e9-features",
        "a-million-stds-for-a-flat-input",
    ],
)
def test_a_huge_input_shape_is_refused_before_anything_is_built(shape: list, extra: dict, message: str) -> None:
    """[0.0] * channels was built even when mean/std were given: 10**9 channels allocated 8 GB before any check."""
    import time
    import tracemalloc

    spec = {"input": {"shape": shape, **extra}, "num_classes": 10, "layers": [{"type": "flatten"}]}
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SpecError, match=message):
            normalize_spec(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < (1 << 20)


def test_a_flat_input_of_the_largest_size_builds_no_per_feature_list() -> None:
    """A flat input's default statistics are one number each, whatever F: [2**28] costs two floats, not 2 GB."""
    import tracemalloc

    tracemalloc.start()
    try:
        spec = normalize_spec({"input": {"shape": [1 << 28]}, "num_classes": 10, "layers": [{"type": "flatten"}]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert spec["input"] == {"shape": [1 << 28], "mean": [0.0], "std": [1.0]} and peak < (1 << 20)


@pytest.mark.parametrize(
    ("inp", "stats_shape"),
    [
        ({"shape": [12]}, (1, 1)),
        ({"shape": [12], "mean": [0.5] * 12, "std": [2.0]}, (1, 12)),
        ({"shape": [3, 2, 2], "mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 4.0]}, (1, 3, 1, 1)),
    ],
)
def test_input_statistics_broadcast_over_a_batch(inp: dict, stats_shape: tuple[int, ...]) -> None:
    spec = {"input": inp, "num_classes": 2, "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2}]}
    model = SpikingNet(spec).eval()
    assert tuple(model.input_mean.shape) == stats_shape and normalize_spec(model.spec) == model.spec
    images = torch.rand(4, 3, 2, 2)
    mean = torch.tensor(model.spec["input"]["mean"])
    std = torch.tensor(model.spec["input"]["std"])
    shaped = (lambda t: t.view(1, -1, 1, 1)) if len(inp["shape"]) == 3 else (lambda t: t.view(1, -1))
    x = images if len(inp["shape"]) == 3 else images.flatten(1)
    with torch.no_grad():
        expected = model.layers(((x - shaped(mean)) / shaped(std)).unsqueeze(0)).mean(0)
        assert torch.equal(model(images), expected)
