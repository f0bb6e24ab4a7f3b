"""NIR export: graph structure, batch-norm folding, binary structure, neuron mapping, refusals, and the proof:
snnTorch's and SpikingJelly's importers run our files on real digits and agree with our PyTorch model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from albsnn_compress import export_nir  # noqa: E402
from albsnn_compress.binarize import binarize_, binarized_layers, binary_scale, candidate_layers  # noqa: E402
from albsnn_compress.data import load_split  # noqa: E402
from albsnn_compress.errors import ExportError  # noqa: E402
from albsnn_compress.formats.container.file import write_container  # noqa: E402
from albsnn_compress.formats.nir import write as nir_write  # noqa: E402
from albsnn_compress.formats.nir.check import compare, snntorch_runner, spikingjelly_runner  # noqa: E402
from albsnn_compress.formats.nir.mapping import DT  # noqa: E402
from albsnn_compress.formats.nir.write import build_nir_graph, fold_batch_norm  # noqa: E402
from albsnn_compress.snn.layer_types import LayerType, registered, same_shape  # noqa: E402
from albsnn_compress.snn.neurons import LIF  # noqa: E402
from albsnn_compress.snn.onnx_mapping import flatten_onnx  # noqa: E402
from albsnn_compress.snn.spec import SpikingNet  # noqa: E402
from albsnn_compress.training.train_model import resolve_architecture  # noqa: E402
from tests.clihelp import run_cli  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """The 359 real digits test images, in [0, 1]."""
    return load_split("digits", None, "test").as_float()


@pytest.fixture(scope="module")
def trained(digits: torch.Tensor) -> SpikingNet:
    """digits-small with lively spikes and its middle convs binarized (BN statistics from real images)."""
    return lively(resolve_architecture("digits-small", "digits"), digits, timesteps=1)


def lively(spec: dict[str, Any], images: torch.Tensor, timesteps: int = 4, binarize: bool = True) -> SpikingNet:
    """A random-init net with lively spikes: random BN affine parameters, statistics from real images."""
    torch.manual_seed(0)
    model = SpikingNet(spec, timesteps)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None
    if binarize:
        binarize_(model, candidate_layers(model))
    model.train()
    with torch.no_grad():
        model(images[:128])
    return model.eval()


def variant(preset: str, **neuron: Any) -> dict[str, Any]:
    spec = resolve_architecture(preset, "digits")
    spec["neuron"] = {**spec.get("neuron", {}), **neuron}
    return spec


# -- structure ---------------------------------------------------------------------------------------------


def test_graph_is_a_checked_chain_with_two_element_sizes(trained: SpikingNet, tmp_path: Path) -> None:
    info = export_nir(trained, tmp_path / "m.nir")
    graph = nir.read(tmp_path / "m.nir")  # type_check=True: NIR's own inference and checks
    assert graph.check_types()
    assert info.nodes == (
        "input",
        "input_norm",
        "conv1",
        "lif1",
        "conv2",
        "lif2",
        "conv3",
        "lif3",
        "avgpool1",
        "conv4",
        "lif4",
        "conv5",
        "gap1",
        "gap1_flatten",
        "output",
    )
    assert sorted(graph.edges) == sorted(zip(info.nodes, info.nodes[1:]))
    for name, node in graph.nodes.items():
        for key in ("stride", "padding", "dilation", "kernel_size"):
            if hasattr(node, key):
                assert np.asarray(getattr(node, key)).shape == (2,), f"{name}.{key}"
    assert graph.nodes["gap1"].kernel_size.tolist() == [4, 4] and graph.nodes["output"].output_type[
        "output"
    ].tolist() == [10]
    assert isinstance(graph.nodes["lif1"], nir.LIF) and graph.nodes["lif1"].tau.shape == (16, 8, 8)
    assert graph.metadata["albsnn_timesteps"] == 1 and graph.metadata["albsnn_format"] == nir_write.NIR_FORMAT
    assert info.file_bytes == (tmp_path / "m.nir").stat().st_size


def test_input_normalization_is_a_1x1_conv(trained: SpikingNet) -> None:
    graph, _ = build_nir_graph(trained)
    norm = graph.nodes["input_norm"]
    (mean,), (std,) = trained.spec["input"]["mean"], trained.spec["input"]["std"]
    assert norm.weight.shape == (1, 1, 1, 1) and norm.weight[0, 0, 0, 0] == np.float32(1 / std)
    assert norm.bias[0] == np.float32(-mean / std)
    spec = {**trained.spec, "input": {**trained.spec["input"], "mean": [0.0], "std": [1.0]}}
    assert "input_norm" not in build_nir_graph(SpikingNet(spec, 1))[0].nodes


def test_batch_norm_folds_in_float64_rounded_once(trained: SpikingNet) -> None:
    graph, info = build_nir_graph(trained)
    conv, bn = trained.layers.conv1, trained.layers.bn1
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = (conv.weight.double() * scale.view(-1, 1, 1, 1)).float().numpy()
        bias = (bn.bias.double() - bn.running_mean.double() * scale).float().numpy()
    np.testing.assert_array_equal(graph.nodes["conv1"].weight, weight)
    np.testing.assert_array_equal(graph.nodes["conv1"].bias, bias)
    assert info.folded_batch_norms == {f"conv{i}": f"bn{i}" for i in range(1, 6)}
    assert graph.nodes["conv1"].metadata["albsnn_batch_norm"] == "bn1"


def test_binarized_layers_stay_scale_times_signs_exactly(trained: SpikingNet) -> None:
    graph, info = build_nir_graph(trained)
    assert (
        info.binary_layers
        == ("conv2", "conv3", "conv4")
        == tuple(n.removeprefix("layers.") for n in binarized_layers(trained))
    )
    for name in info.binary_layers:
        node, conv = graph.nodes[name], trained.get_submodule(f"layers.{name}")
        weight, scale = node.weight.reshape(node.weight.shape[0], -1), node.metadata["albsnn_scale"]
        assert node.metadata["albsnn_binary"] == 1
        np.testing.assert_array_equal(np.abs(weight), np.broadcast_to(scale[:, None], weight.shape))
        bn = trained.get_submodule(f"layers.bn{name[-1]}")
        with torch.no_grad():
            signs = torch.where(conv.parametrizations.weight.original >= 0, 1.0, -1.0).reshape(len(scale), -1)
            gain = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            folded = (binary_scale(conv.weight).double() * gain).float()
        np.testing.assert_array_equal(np.sign(weight), (signs * torch.sign(gain).float().view(-1, 1)).numpy())
        np.testing.assert_array_equal(scale, folded.abs().numpy())
    assert "albsnn_binary" not in graph.nodes["conv1"].metadata


def test_fc_head_maps_to_affine_and_linear(digits: torch.Tensor) -> None:
    model = lively(resolve_architecture("digits-fc", "digits"), digits)
    graph, info = build_nir_graph(model)
    assert isinstance(graph.nodes["flatten1"], nir.Flatten) and graph.nodes["flatten1"].start_dim == 0
    assert isinstance(graph.nodes["linear1"], nir.Affine)  # bias-free linear + bn1d: the folded bias
    assert isinstance(graph.nodes["linear2"], nir.Affine) and info.folded_batch_norms["linear1"] == "bn3"
    assert "linear1" in info.binary_layers
    spec = resolve_architecture("digits-fc", "digits")
    spec["layers"] = [layer for layer in spec["layers"] if layer["type"] != "bn"]
    spec["layers"][-1]["bias"] = False
    assert isinstance(build_nir_graph(SpikingNet(spec, 1))[0].nodes["linear2"], nir.Linear)


# -- neurons: the dt convention ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "neuron, kind, r",
    [
        ({}, nir.LIF, lambda tau: 1.0),
        ({"decay_input": False, "tau": 1.5, "v_reset": 0.1}, nir.LIF, lambda tau: tau),
        ({"leak": False, "v_threshold": 0.75}, nir.IF, lambda tau: 1 / DT),
        ({"strict_threshold": True, "tau": 3.0}, nir.LIF, lambda tau: 1.0),
    ],
    ids=["lif-decay-input", "lif-state-decay", "if", "strict"],
)
def test_neuron_parameters_follow_the_dt_convention(neuron: dict[str, Any], kind: type, r: Any) -> None:
    model = SpikingNet(variant("digits-small", **neuron), 1)
    graph, _ = build_nir_graph(model)
    node, settings = graph.nodes["lif1"], {**model.spec["neuron"]}
    assert isinstance(node, kind)
    np.testing.assert_array_equal(node.r, np.full((16, 8, 8), r(settings["tau"])))
    np.testing.assert_array_equal(node.v_threshold, np.full((16, 8, 8), settings["v_threshold"]))
    np.testing.assert_array_equal(node.v_reset, np.full((16, 8, 8), settings["v_reset"]))
    if kind is nir.LIF:
        np.testing.assert_allclose(node.tau / DT, settings["tau"], rtol=1e-12)
        np.testing.assert_array_equal(node.v_leak, node.v_reset)
    assert node.metadata["albsnn_threshold"] == (">" if settings["strict_threshold"] else ">=")


@pytest.mark.parametrize("decay_input", [True, False])
def test_euler_step_of_the_nir_node_is_our_charge(decay_input: bool) -> None:
    """v + dt/tau (v_leak - v + r I) with the written tau, r, v_leak equals our LIF's H, for random v and I."""
    neuron = LIF(tau=2.7, v_reset=-0.3, decay_input=decay_input)
    node = nir_write.neuron_node("lif", neuron, (64,))
    v, x = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    euler = v.numpy() + DT / node.tau * (node.v_leak - v.numpy() + node.r * x.numpy())
    np.testing.assert_allclose(euler, neuron.charge(v, x).numpy(), rtol=1e-12, atol=1e-12)


def test_per_channel_tau_is_written_per_neuron(digits: torch.Tensor) -> None:
    spec = variant("digits-small")
    spec["layers"][2]["per_channel"] = ["tau", "v_threshold"]
    model = SpikingNet(spec, 1)
    with torch.no_grad():
        model.layers.lif1.tau.copy_(torch.linspace(1.5, 4.0, 16).view(16, 1, 1))
        model.layers.lif1.v_threshold.copy_(torch.linspace(0.5, 1.5, 16).view(16, 1, 1))
    node = build_nir_graph(model)[0].nodes["lif1"]
    np.testing.assert_allclose(node.tau[:, 0, 0] / DT, torch.linspace(1.5, 4.0, 16).double().numpy(), rtol=1e-12)
    assert (node.tau == node.tau[:, :1, :1]).all() and node.v_threshold[3, 5, 5] == np.float32(
        model.layers.lif1.v_threshold[3, 0, 0]
    )


# -- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["soft", "soft_deferred", "none"])
def test_resets_nir_has_no_form_for_are_refused(reset: str, tmp_path: Path) -> None:
    model = SpikingNet(variant("digits-small", reset=reset), 1)
    with pytest.raises(
        ExportError, match=f"layer lif1: reset '{reset}' cannot be written to NIR: .* retrain with reset 'hard'"
    ):
        export_nir(model, tmp_path / "m.nir")
    assert not list(tmp_path.iterdir())


def _spec_with(layers: list[dict[str, Any]]) -> dict[str, Any]:
    spec = resolve_architecture("digits-small", "digits")
    spec["layers"] = layers
    return spec


@pytest.mark.parametrize(
    "layers, message",
    [
        (
            [
                {"type": "conv", "out_channels": 4, "padding": 1},
                {"type": "lif"},
                {"type": "maxpool"},
                {"type": "conv", "out_channels": 10, "kernel_size": 1},
                {"type": "gap"},
            ],
            r"layer maxpool1 \(maxpool\): no NIR node for this layer; NIR has no max pooling node; use avgpool",
        ),
        (
            [
                {"type": "conv", "out_channels": 4, "padding": 1},
                {"type": "lif"},
                {"type": "avgpool"},
                {"type": "bn"},
                {"type": "conv", "out_channels": 10, "kernel_size": 1},
                {"type": "gap"},
            ],
            r"layer bn1 \(bn\): NIR has no batch norm; put it right after a conv or linear",
        ),
        (
            [{"type": "bn"}, {"type": "conv", "out_channels": 10, "kernel_size": 1}, {"type": "gap"}],
            r"layer bn1 \(bn\): NIR has no batch norm",
        ),
        (
            [{"type": "conv", "out_channels": 10, "kernel_size": 1, "name": "input"}, {"type": "gap"}],
            r"layer input: the name is reserved for a NIR graph node",
        ),
        (
            [
                {"type": "conv", "out_channels": 4, "padding": 1},
                {"type": "lif"},
                {"type": "conv", "out_channels": 10, "kernel_size": 1, "groups": 2},
                {"type": "gap"},
            ],
            r"layer conv2: groups=2: NIR's Conv2d takes weight.shape\[1\] as its input channels .* use groups=1",
        ),
    ],
    ids=["maxpool", "bn-after-pool", "bn-first", "reserved-name", "grouped-conv"],
)
def test_layers_nir_cannot_hold_are_refused_naming_them(
    layers: list[dict[str, Any]], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=message):
        export_nir(SpikingNet(_spec_with(layers), 1), tmp_path / "m.nir")


def test_a_registered_layer_type_without_a_nir_entry_is_refused() -> None:
    class Half(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 0.5

    record = LayerType(
        name="half", modules=(Half,), fields={}, build=lambda *_: Half(), output_shape=same_shape, onnx=flatten_onnx
    )
    with registered(record):
        model = SpikingNet(
            _spec_with([{"type": "conv", "out_channels": 10, "kernel_size": 1}, {"type": "half"}, {"type": "gap"}]), 1
        )
        with pytest.raises(
            ExportError, match=r"layer half1 \(half\): no NIR node for this layer; NIR export supports \['avgpool'"
        ):
            build_nir_graph(model)


def test_bad_dt_is_refused(trained: SpikingNet) -> None:
    with pytest.raises(ExportError, match="dt must be a positive number of seconds"):
        build_nir_graph(trained, dt=0.0)


# -- the file ----------------------------------------------------------------------------------------------


def test_write_is_atomic_and_deterministic(
    trained: SpikingNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_nir(trained, tmp_path / "a.nir")
    export_nir(trained, tmp_path / "b.nir")
    assert (tmp_path / "a.nir").read_bytes() == (tmp_path / "b.nir").read_bytes()
    old = (tmp_path / "a.nir").read_bytes()

    def fail(_stream: Any, _graph: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(nir_write.nir, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        export_nir(trained, tmp_path / "a.nir")
    assert (tmp_path / "a.nir").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nir", "b.nir"]


def test_fold_batch_norm_is_the_network_the_file_describes(trained: SpikingNet, digits: torch.Tensor) -> None:
    folded, _ = fold_batch_norm(trained)
    assert [layer["type"] for layer in folded.spec["layers"]].count("bn") == 0
    assert binarized_layers(folded) == binarized_layers(trained)
    with torch.inference_mode():
        torch.testing.assert_close(folded(digits), trained(digits), rtol=0, atol=1e-4)


def test_cli_exports_a_container_to_nir(trained: SpikingNet, tmp_path: Path) -> None:
    write_container(tmp_path / "m.albsnn", trained)
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "nir", "-o", str(tmp_path / "m.nir")])
    assert "binary up to a per-channel scale: conv2, conv3, conv4" in result.stdout
    assert nir.read(tmp_path / "m.nir").metadata["albsnn_binary_layers"] == "conv2,conv3,conv4"
    model = SpikingNet(variant("digits-small", reset="soft"), 1)
    write_container(tmp_path / "soft.albsnn", model)
    result = run_cli(
        ["export", str(tmp_path / "soft.albsnn"), "--format", "nir", "-o", str(tmp_path / "s.nir")], expected_exit=2
    )
    assert "error: layer lif1: reset 'soft' cannot be written to NIR" in result.stderr


# -- the proof: other people's runtimes ----------------------------------------------------------------


def _assert_agrees(model: SpikingNet, runner: Any, images: torch.Tensor) -> None:
    agreement = compare(model, runner, images)
    # a prediction may differ only where a spike sits exactly on its threshold (a float-rounding tie:
    # their folded batch norm, or our first conv run once for all steps, rounds differently), and rarely
    assert not agreement.unexplained, agreement.to_dict()
    assert agreement.prediction_agreement >= 0.99 and len(agreement.ties) <= 0.01 * agreement.images, (
        agreement.to_dict()
    )
    assert agreement.max_logit_diff_untied <= 1e-4, agreement.to_dict()


@pytest.mark.parametrize("timesteps", [1, 4])
def test_snntorch_and_spikingjelly_run_our_file_like_pytorch(
    trained: SpikingNet, digits: torch.Tensor, timesteps: int, tmp_path: Path
) -> None:
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    model = trained
    model.timesteps = timesteps  # the same weights at T steps
    try:
        export_nir(model, tmp_path / "m.nir")
        _assert_agrees(model, spikingjelly_runner(tmp_path / "m.nir", timesteps), digits)
        _assert_agrees(model, snntorch_runner(tmp_path / "m.nir", timesteps), digits)
    finally:
        model.timesteps = 1


def _per_channel_tau(model: SpikingNet) -> SpikingNet:
    torch.manual_seed(1)
    with torch.no_grad():
        for neuron in model.modules():
            if isinstance(neuron, LIF) and "tau" in neuron.per_channel:
                neuron.tau.copy_(torch.rand(neuron.tau.shape) * 3 + 1.2)
    return model


def _lively_variant(preset: str, neuron: dict[str, Any], per_channel: bool, images: torch.Tensor) -> SpikingNet:
    spec = variant(preset, **neuron)
    for layer in spec["layers"]:
        if per_channel and layer["type"] == "lif":
            layer["per_channel"] = ["tau"]
    model = lively(spec, images, timesteps=4)
    return _per_channel_tau(model) if per_channel else model


@pytest.mark.parametrize(
    "preset, neuron, per_channel, spikingjelly, snntorch_images",
    [
        ("digits-fc", {}, False, True, 80),
        ("digits-small", {"decay_input": False, "tau": 1.5}, False, True, 80),
        (
            "digits-small",
            {"decay_input": False, "tau": 1.5, "v_reset": 0.1, "v_threshold": 0.8},
            False,
            True,
            0,
        ),  # snnTorch: v_leak must be 0
        ("digits-small", {"leak": False}, False, True, 0),  # snnTorch reads nir.IF only with r = 1 (see docs/nir.md)
        ("digits-small", {"strict_threshold": True, "tau": 3.0}, False, True, 80),
        ("digits-small", {"decay_input": False}, True, False, 80),  # SpikingJelly: tau must be uniform
    ],
    ids=["fc-head", "state-decay", "v-reset", "if", "strict", "per-channel-tau"],
)
def test_variants_agree_in_spikingjelly_and_snntorch(
    preset: str,
    neuron: dict[str, Any],
    per_channel: bool,
    spikingjelly: bool,
    snntorch_images: int,
    digits: torch.Tensor,
    tmp_path: Path,
) -> None:
    model = _lively_variant(preset, neuron, per_channel, digits)
    export_nir(model, tmp_path / "m.nir")
    if spikingjelly:
        pytest.importorskip("spikingjelly")
        _assert_agrees(model, spikingjelly_runner(tmp_path / "m.nir", 4), digits)
    if snntorch_images:
        pytest.importorskip("snntorch")
        _assert_agrees(model, snntorch_runner(tmp_path / "m.nir", 4), digits[:snntorch_images])


def test_what_the_importers_cannot_read(digits: torch.Tensor, tmp_path: Path) -> None:
    """docs/nir.md's list: snnTorch 1.0.0 refuses nir.IF with SpikingJelly's r = 1/dt and v_leak != 0, and runs a
    per-channel tau with r = 1 (decay_input) wrongly (one input gain for all neurons); SpikingJelly 2.0.0 refuses
    any per-channel parameter."""
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    export_nir(SpikingNet(variant("digits-small", leak=False), 1), tmp_path / "if.nir")
    with pytest.raises(AssertionError, match="r != 1 not supported"):
        snntorch_runner(tmp_path / "if.nir", 1)
    export_nir(SpikingNet(variant("digits-small", v_reset=0.1), 1), tmp_path / "reset.nir")
    with pytest.raises(AssertionError, match="v_leak not supported"):
        snntorch_runner(tmp_path / "reset.nir", 1)
    model = _lively_variant("digits-small", {}, True, digits)
    export_nir(model, tmp_path / "tau.nir")
    assert compare(model, snntorch_runner(tmp_path / "tau.nir", 4), digits[:20]).unexplained
    with pytest.raises(ValueError, match="nir.LIF.tau must be uniform across all neurons"):
        spikingjelly_runner(tmp_path / "tau.nir", 4)


def test_ties_are_found_and_a_wrong_threshold_is_not_one(digits: torch.Tensor, tmp_path: Path) -> None:
    """The checker is not vacuous: an exact tie (a pixel of 1.0 on threshold 1.0, fired by our >= and not by
    snnTorch's >) is traced as a tie; a threshold changed in the file is unexplained."""
    pytest.importorskip("snntorch")
    layers = [
        {"type": "conv", "out_channels": 1, "kernel_size": 1},
        {"type": "lif"},
        {"type": "conv", "out_channels": 10, "kernel_size": 1},
        {"type": "gap"},
    ]
    spec = _spec_with(layers)
    spec["input"] = {**spec["input"], "mean": [0.0], "std": [1.0]}
    spec["neuron"] = {"decay_input": False}
    model = SpikingNet(spec, 1).eval()
    with torch.no_grad():
        model.layers.conv1.weight.fill_(1.0)
    export_nir(model, tmp_path / "tie.nir")
    agreement = compare(model, snntorch_runner(tmp_path / "tie.nir", 1), digits[:40])
    assert agreement.ties and not agreement.unexplained
    assert all(tie["margin"] == 0.0 and tie["layer"] == 0 for tie in agreement.ties)

    graph = nir.read(tmp_path / "tie.nir")
    graph.nodes["lif1"].v_threshold = graph.nodes["lif1"].v_threshold * 0 + 0.9
    nir.write(tmp_path / "wrong.nir", graph)
    agreement = compare(model, snntorch_runner(tmp_path / "wrong.nir", 1), digits[:40])
    assert agreement.unexplained


# -- the report and the compress run ---------------------------------------------------------------------


def test_report_lists_the_nir_file_and_says_what_it_stores(tmp_path: Path) -> None:
    from albsnn_compress.report import build_report
    from albsnn_compress.report.schema import validate_report
    from tests.report_samples import digits_result

    result = digits_result()
    info = export_nir(result.model, tmp_path / "m.nir")
    report = build_report(result, nir=info.path, nir_binary_layers=info.binary_layers)
    validate_report(report)
    storage = report["storage"]
    assert storage["on_disk"]["nir"] == {"path": str(info.path), "bytes": info.file_bytes}
    assert storage["nir"]["binary_scaled_layers"] == ["conv2", "conv3"] and storage["nir"]["weight_precision"] == 32
    assert "no 1-bit packing on disk" in storage["nir"]["note"] and "+scale[c] or -scale[c]" in storage["nir"]["note"]
    plain = build_report(result)
    assert (
        "nir" not in plain["storage"]
        and "nir" not in plain["storage"]["on_disk"]
        and "nir" not in plain["storage"]["on_disk_ratio"]
    )


def test_compress_writes_nir_on_request(tmp_path: Path) -> None:
    import json

    from albsnn_compress.checkpoint import save_checkpoint
    from albsnn_compress.errors import CompressionError
    from albsnn_compress.pipeline import CompressRequest

    assert CompressRequest(tmp_path / "m.pt", 1.0, formats=("nir",)).formats == ("albsnn", "onnx", "nir")
    with pytest.raises(CompressionError, match=r"unknown output formats \['tflite'\]"):
        CompressRequest(tmp_path / "m.pt", 1.0, formats=("tflite",))
    run_cli([str(tmp_path / "m.pt"), "--budget", "1", "--formats", "albsnn,onnx,tflite"], expected_exit=2)

    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "m.pt", SpikingNet(resolve_architecture("digits-small", "digits"), 1), {"dataset": "digits"}
    )
    run_cli(
        [
            str(tmp_path / "m.pt"),
            "--budget",
            "100",
            "--strategy",
            "all",
            "--epochs",
            "0",
            "--trial-epochs",
            "0",
            "--formats",
            "albsnn,onnx,nir",
            "-o",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["storage"]["on_disk"]["nir"]["bytes"] == (tmp_path / "out" / "m.nir").stat().st_size
    assert report["storage"]["nir"]["binary_scaled_layers"] == ["conv2", "conv3", "conv4"]
    assert "m.nir" in json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]

    save_checkpoint(tmp_path / "soft.pt", SpikingNet(variant("digits-small", reset="soft"), 1), {"dataset": "digits"})
    result = run_cli(
        [str(tmp_path / "soft.pt"), "--budget", "1", "--formats", "nir", "-o", str(tmp_path / "soft")], expected_exit=2
    )
    assert "layer lif1: reset 'soft' cannot be written to NIR" in result.stderr  # refused before the search


@pytest.mark.subprocess
def test_nir_stays_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package, the CLI and the pipeline import without nir; asking for NIR without it names the package."""
    import subprocess
    import sys

    from albsnn_compress.errors import NirError
    from albsnn_compress.formats.nir import optional as nir_optional

    code = (
        "import sys, albsnn_compress, albsnn_compress.cli.main, albsnn_compress.pipeline; "
        "print(sorted({'nir', 'h5py'} & set(sys.modules)))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )

    def missing(name: str) -> None:
        raise ModuleNotFoundError("No module named 'nir'", name="nir")

    monkeypatch.setattr(nir_optional.importlib, "import_module", missing)
    with pytest.raises(NirError, match=r"NIR files need the 'nir' package: pip install nir"):
        nir_optional.export_nir(SpikingNet(variant("digits-small"), 1), tmp_path / "m.nir")
