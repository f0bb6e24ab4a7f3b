"""Flat (vector) inputs and MLP-only networks through every path (issue 31).

A spec may take ``[F]`` feature vectors instead of ``[C, H, W]`` images. Proved here on the bundled
8x8 digits, flattened to 64 features: the spec and its statistics, how a flat model takes a
dataset's images (flattened row-major), what it costs (``model_cost``), ``compress`` on it, the
container round trip, ONNX in stock onnxruntime against PyTorch, NIR out and back, snnTorch's and
SpikingJelly's NIR importers running the file, snnTorch's own MLP export read back, and the
framework importers: snnTorch tutorial 5's class (fed flattened images) and ``nn.Sequential`` MLPs
that start with a ``Linear`` import with a flat input and no leading flatten.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.data import load_splits
from albsnn_compress.errors import ExportError, InteropError, NirError, SpecError
from albsnn_compress.files.model_cost import MAX_ACTIVATION, cost_problem, inference_bytes, parameter_bytes
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.formats.onnx.export import build_onnx_model
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.snn.presets import mlp_spec
from albsnn_compress.snn.spec import (
    MAX_INPUT_CHANNELS,
    SpikingNet,
    accepts_input_shape,
    flat_statistics,
    normalize_spec,
    spec_bounds,
)
from albsnn_compress.training.trainer import TrainConfig, Trainer, evaluate
from tests.interop_check import assert_equivalent, lively_batch_norms

nir = pytest.importorskip("nir")

from albsnn_compress import export_nir, read_nir  # noqa: E402
from albsnn_compress.formats.nir.check import compare, snntorch_runner, spikingjelly_runner  # noqa: E402
from albsnn_compress.formats.nir.summary import nir_summary  # noqa: E402
from albsnn_compress.formats.nir.write import MAX_NORMALIZED_FEATURES, fold_batch_norm  # noqa: E402

FEATURES = 64  # the digits' 1 x 8 x 8 pixels, flattened

MLP = {
    "name": "digits-mlp",
    "input": {"shape": [FEATURES], "mean": [0.3], "std": [0.35]},
    "num_classes": 10,
    "layers": [
        {"type": "linear", "out_features": 64, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 48, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 10},
    ],
}
"""An MLP-only spec (linear, batch norm, LIF; no conv, no pooling, no flatten) on flat 64-feature input."""

MLP_IMAGES = normalize_spec({**MLP, "input": {"shape": [1, 8, 8]}, "layers": [{"type": "flatten"}, *MLP["layers"]]})
"""The same MLP on images with a leading flatten: what a flat spec replaces."""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    return load_splits("digits", None)


@pytest.fixture(scope="module")
def test_images(digits: dict[str, Any]) -> torch.Tensor:
    """The 359 digits test images as the dataset gives them: ``[N, 1, 8, 8]`` in [0, 1]."""
    images: torch.Tensor = digits["test"].as_float()
    return images


@pytest.fixture(scope="module")
def trained(digits: dict[str, Any]) -> SpikingNet:
    """The MLP trained on the digits as the loader gives them (images, flattened by the model): about 2 s."""
    torch.manual_seed(0)
    model = SpikingNet(MLP, timesteps=2)
    Trainer(model, digits["train"], TrainConfig(epochs=15, seed=0)).run(10**9)
    return model.eval()


@pytest.fixture(scope="module")
def compressed(trained: SpikingNet, digits: dict[str, Any]) -> SpikingNet:
    """The trained MLP after ``compress`` at a 1-point budget, every linear layer a candidate."""
    # the adaptive search at its earlier rate binarizes layers of this tiny MLP in half an epoch, which the formats need
    config = SearchConfig("adaptive", epochs=0.5, trial_epochs=0.5, lr=1e-3, binarize_first_last=True)
    with pytest.warns(Warning):  # 144 validation images cannot confirm a 1-point budget: the search says so
        result = compress(trained, digits["train"], digits["val"], 1.0, config=config)
    assert result.binarized and result.accuracy["val_before"] - result.accuracy["val_after"] <= 1.0
    return result.model.eval()


# -- the spec --------------------------------------------------------------------------------------------------


def test_a_flat_spec_takes_one_mean_and_std_or_one_per_feature() -> None:
    spec = normalize_spec({"input": {"shape": [FEATURES]}, "num_classes": 10, "layers": MLP["layers"]})
    assert spec["input"] == {"shape": [FEATURES], "mean": [0.0], "std": [1.0]}  # one number for every feature
    per_feature = {"shape": [FEATURES], "mean": [0.1 * (i % 3) for i in range(FEATURES)], "std": [0.5]}
    again = normalize_spec({**spec, "input": per_feature})
    assert again["input"] == per_feature and normalize_spec(again) == again
    model = SpikingNet(again)
    assert model.input_mean.shape == (1, FEATURES) and model.input_std.shape == (1, 1)
    assert [layer["type"] for layer in spec["layers"]] == ["linear", "bn", "lif", "linear", "bn", "lif", "linear"]


@pytest.mark.parametrize(
    ("inp", "message"),
    [
        ({"shape": [64], "mean": [0.5] * 3}, r"mean must be a list of 1 number \(for every feature\) or 64 \(one per"),
        ({"shape": [8, 8]}, r"input shape must be \[C, H, W\] \(images\) or \[F\] \(feature vectors\), got \[8, 8\]"),
        ({"shape": [0]}, r"input shape\[0\] must be an integer >= 1, got 0"),
        ({"shape": [10**9]}, r"input shape\[0\] is more than 268435456"),
        (
            {"shape": [MAX_INPUT_CHANNELS + 1], "std": [1.0] * (MAX_INPUT_CHANNELS + 1)},
            r"std must be a list of 1 number \(for every feature; one per feature only up to 65536 features\)",
        ),
    ],
    ids=["three-means", "rank-2", "zero", "huge", "too-many-stds"],
)
def test_flat_input_refusals_name_the_rule(inp: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        normalize_spec({"input": inp, "num_classes": 10, "layers": [{"type": "linear", "out_features": 10}]})


def test_maps_after_a_flat_input_are_refused_naming_the_layer() -> None:
    spec = {"input": {"shape": [FEATURES]}, "num_classes": 10, "layers": [{"type": "conv", "out_channels": 10}]}
    with pytest.raises(
        SpecError, match=r"layer conv1 \(conv\) needs a \[C, H, W\] input, got \[64\]; .*\[C, H, W\] input"
    ):
        SpikingNet(spec)


def test_a_flat_model_takes_images_flattened_row_major(test_images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = SpikingNet(MLP, 3).eval()
    with torch.no_grad():
        from_images = model(test_images)
        assert torch.equal(from_images, model(test_images.flatten(1)))  # channel, then row, then column
        assert torch.equal(from_images, model(test_images.reshape(-1, 8, 8)))  # any sample shape of 64 elements
        assert torch.equal(model.samples(test_images), test_images.view(len(test_images), -1))
    assert accepts_input_shape(model.spec, (1, 8, 8)) and accepts_input_shape(model.spec, (FEATURES,))
    assert not accepts_input_shape(model.spec, (1, 8, 9)) and not accepts_input_shape(MLP_IMAGES, (FEATURES,))
    with pytest.raises(ValueError, match=r"takes \[batch, 64\] feature vectors .* got a batch of shape \[2, 1, 9, 9\]"):
        model(torch.rand(2, 1, 9, 9))


def test_model_cost_measures_flat_specs() -> None:
    spec = normalize_spec(MLP)
    model = SpikingNet(spec)
    params = sum(v.numel() for k, v in model.state_dict().items() if "num_batches_tracked" not in k)
    assert spec_bounds(spec) == (params, 64) and parameter_bytes(spec) == 4 * params
    # input 64, then per layer in + 6 * out: linear1 (shared, once), bn1 and lif1 ... at T steps
    widest = max(64 + 6 * 64, *(3 * (size + 6 * size) for size in (64, 64, 48, 48)), 3 * (48 + 6 * 48))
    assert inference_bytes(spec, timesteps=3, batch=5) == 4 * 5 * (64 + widest)
    assert cost_problem(spec, 3) is None
    huge = normalize_spec({**MLP, "input": {"shape": [MAX_ACTIVATION * 2]}})
    assert cost_problem(huge, 1).startswith(f"'spec': a layer outputs {MAX_ACTIVATION * 2} elements per sample")


# -- compress, container, ONNX ---------------------------------------------------------------------------------


def test_compress_runs_on_a_flat_mlp_of_flattened_digits(
    trained: SpikingNet, compressed: SpikingNet, digits: dict[str, Any]
) -> None:
    assert evaluate(trained, digits["test"]) > 90.0  # a real classifier of the flattened digits
    assert binarized_layers(compressed) and compressed.spec["input"]["shape"] == [FEATURES]
    assert evaluate(compressed, digits["test"]) > 85.0


def test_container_round_trip_is_exact(compressed: SpikingNet, test_images: torch.Tensor, tmp_path: Path) -> None:
    write_container(tmp_path / "m.albsnn", compressed, class_names=[str(i) for i in range(10)])
    container = read_container(tmp_path / "m.albsnn")
    assert container.model.spec == compressed.spec and container.model.spec["input"]["shape"] == [FEATURES]
    assert binarized_layers(container.model) == binarized_layers(compressed)
    with torch.no_grad():
        assert torch.equal(container.model(test_images), compressed(test_images))


def _ort_logits(model: SpikingNet, weights: str, images: torch.Tensor) -> np.ndarray:
    proto = build_onnx_model(model, weights=weights)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", FEATURES]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    logits: np.ndarray = session.run(["logits"], {"images": images.flatten(1).numpy()})[0]
    return logits


@pytest.mark.parametrize("weights", ["packed", "float"])
def test_onnxruntime_runs_the_flat_model_as_pytorch_does(
    compressed: SpikingNet, test_images: torch.Tensor, weights: str
) -> None:
    with torch.no_grad():
        reference = compressed(test_images).numpy()
    logits = _ort_logits(compressed, weights, test_images)
    assert (logits.argmax(1) == reference.argmax(1)).all()
    assert float(np.abs(logits - reference).max()) <= 1e-5


# -- NIR ---------------------------------------------------------------------------------------------------


def test_nir_file_has_a_flat_input_and_reads_back_exactly(
    compressed: SpikingNet, test_images: torch.Tensor, tmp_path: Path
) -> None:
    info = export_nir(compressed, tmp_path / "m.nir")
    assert info.nodes == ("input", "input_norm", "linear1", "lif1", "linear2", "lif2", "linear3", "output")
    assert set(info.binary_layers) == {name.removeprefix("layers.") for name in binarized_layers(compressed)}
    graph = nir.read(tmp_path / "m.nir")
    assert graph.nodes["input"].input_type["input"].tolist() == [FEATURES]
    norm = graph.nodes["input_norm"]  # (x - 0.3) / 0.35 as a diagonal Affine
    assert isinstance(norm, nir.Affine) and norm.weight.shape == (FEATURES, FEATURES)
    assert np.count_nonzero(norm.weight) == FEATURES and np.all(norm.bias == np.float32(-0.3 / 0.35))
    back = read_nir(tmp_path / "m.nir")
    folded, _ = fold_batch_norm(compressed)
    assert back.spec == folded.spec and back.spec["input"] == compressed.spec["input"]
    with torch.no_grad():
        assert torch.equal(back(test_images), folded(test_images))
    export_nir(back, tmp_path / "again.nir")
    export_nir(folded, tmp_path / "folded.nir")  # the file is a fixed point: the folded model, once read
    assert (tmp_path / "again.nir").read_bytes() == (tmp_path / "folded.nir").read_bytes()
    summary = nir_summary(tmp_path / "m.nir")
    assert summary["import"] == "yes, at T=2 as recorded" and summary["nodes"][0]["output"] == [FEATURES]


@pytest.mark.parametrize("runtime", ["snntorch", "spikingjelly"])
def test_the_importers_run_the_flat_nir_file_with_identical_predictions(
    compressed: SpikingNet, test_images: torch.Tensor, tmp_path: Path, runtime: str
) -> None:
    pytest.importorskip(runtime)
    export_nir(compressed, tmp_path / "m.nir")
    runner = (snntorch_runner if runtime == "snntorch" else spikingjelly_runner)(tmp_path / "m.nir", 2)
    agreement = compare(compressed, runner, test_images)
    assert agreement.identical_predictions == len(test_images) and agreement.ok(), agreement.to_dict()


def test_per_feature_normalization_goes_through_nir(test_images: torch.Tensor, tmp_path: Path) -> None:
    spec = {**MLP, "input": {"shape": [FEATURES], "mean": [0.01 * i for i in range(FEATURES)], "std": [0.5]}}
    torch.manual_seed(0)
    model = SpikingNet(spec, 2).eval()
    export_nir(model, tmp_path / "m.nir")
    back = read_nir(tmp_path / "m.nir")
    assert back.spec["input"] == normalize_spec(spec)["input"]
    with torch.no_grad():
        assert torch.equal(back(test_images), fold_batch_norm(model)[0](test_images))
    graph = nir.read(tmp_path / "m.nir")
    graph.nodes["input_norm"].metadata["albsnn_std"] = np.full(1, 0.25)  # the weights say 0.5
    nir.write(tmp_path / "tampered.nir", graph)
    with pytest.raises(NirError, match=r"node 'input_norm' \(Affine\): the input normalization's weights disagree"):
        read_nir(tmp_path / "tampered.nir")
    wide = {**MLP, "input": {"shape": [MAX_NORMALIZED_FEATURES + 1], "mean": [0.5]}}
    with pytest.raises(ExportError, match=r"would be a 4097 x 4097 NIR Affine .*; at most 4096 .* export ONNX or C"):
        export_nir(SpikingNet(wide), tmp_path / "wide.nir")
    assert not (tmp_path / "wide.nir").exists()


def test_a_foreign_flat_nir_graph_takes_the_callers_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type=np.array([FEATURES])),
        "fc": nir.Affine(weight=rng.normal(0, 0.3, (10, FEATURES)).astype(np.float32), bias=np.zeros(10, np.float32)),
        "output": nir.Output(output_type=np.array([10])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "output")], type_check=True)
    nir.write(tmp_path / "g.nir", graph)
    assert read_nir(tmp_path / "g.nir", 1, mean=[0.5], std=[0.25]).spec["input"]["mean"] == [0.5]
    assert read_nir(tmp_path / "g.nir", 1, mean=[0.0] * FEATURES).spec["input"]["mean"] == [0.0] * FEATURES
    with pytest.raises(NirError, match=r"mean must list 1 number \(for every feature\) or 64 \(one per feature\)"):
        read_nir(tmp_path / "g.nir", 1, mean=[0.5, 0.5])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_snntorchs_own_mlp_export_reads_as_the_same_network(test_images: torch.Tensor, tmp_path: Path) -> None:
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    from albsnn_compress.formats.nir.check import snntorch_model_runner

    torch.manual_seed(0)
    zero = {"init_hidden": True, "reset_mechanism": "zero"}  # NIR's LIF resets to v_reset (subtract: no NIR form)
    net = nn.Sequential(  # per-neuron beta and threshold: what snnTorch 1.0's export needs (docs/nir.md)
        nn.Linear(FEATURES, 32),
        snn.Leaky(beta=torch.full((32,), 0.9), threshold=torch.full((32,), 0.5), **zero),
        nn.Linear(32, 10),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.full((10,), 0.5), output=True, **zero),
    )
    with torch.no_grad():
        net[0].weight.mul_(3)
    nir.write(tmp_path / "snn.nir", export_to_nir(net, torch.rand(1, FEATURES), ignore_dims=[0]))
    model = read_nir(tmp_path / "snn.nir", timesteps=4)
    assert model.spec["input"]["shape"] == [FEATURES] and model.spec["layers"][0]["type"] == "linear"
    run = snntorch_model_runner(net, 4)
    agreement = compare(model, lambda images, record: run(images.flatten(1), record), test_images)
    assert agreement.identical_predictions == len(test_images) and agreement.ok(), agreement.to_dict()
    assert len(set(model(test_images).argmax(1).tolist())) > 1  # not degenerate


# -- importing from the frameworks -----------------------------------------------------------------------------


class Tutorial5(nn.Module):
    """snnTorch tutorial 5's ``Net`` on 8x8 digits: 64-48-10, ``snn.Leaky(beta)`` with its default subtract reset,
    ``init_hidden=False``, fed ``data.view(batch_size, -1)``, returns ``(spk_rec, mem_rec)``."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        import snntorch as snn

        self.steps = steps
        self.fc1 = nn.Linear(FEATURES, 48)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(48, 10)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _step in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def _tutorial5_run(net: Tutorial5) -> Any:
    from albsnn_compress.snn.recording import record_outputs

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs([net.lif1, net.lif2]) as steps:
            spikes, _ = net(images.flatten(1))  # the tutorial's data.view(batch_size, -1)
        return spikes.mean(0), [torch.stack(s) for s in steps]

    return run


def test_tutorial5_imports_with_a_flat_input_and_no_leading_flatten(test_images: torch.Tensor, tmp_path: Path) -> None:
    pytest.importorskip("snntorch")
    from albsnn_compress import from_snntorch
    from albsnn_compress.interop.sources import import_metadata

    torch.manual_seed(0)
    net = Tutorial5()
    with torch.no_grad():
        net.fc1.weight.mul_(4)
        net.fc2.weight.mul_(2)
    model = from_snntorch(net, (1, 8, 8), mean=0.3, std=0.35)  # the dataset's image shape; T from the loop
    assert model.spec["input"] == {"shape": [FEATURES], "mean": [0.3], "std": [0.35]}
    assert [layer["type"] for layer in model.spec["layers"]] == ["linear", "lif", "linear", "lif"]
    assert model.spec["neuron"]["reset"] == "soft_deferred" and model.timesteps == 4
    assert model.metadata["source"]["traced"]["flattened_input"] and model.metadata["layers"]["linear1"] == "fc1"
    source = _tutorial5_run(net)
    numbers = assert_equivalent(model, lambda images: source((images - 0.3) / 0.35), test_images)
    assert numbers["max_difference"] == 0.0 and numbers["min_rate"] > 0.005
    assert import_metadata(model, "digits", {})["dataset"] == "digits"  # a flat model takes the dataset's images
    # the default snnTorch model leaves as ONNX (every reset rule) and is refused by NIR, with the alternative
    with torch.no_grad():
        reference = model(test_images).numpy()
    assert float(np.abs(_ort_logits(model, "float", test_images) - reference).max()) <= 1e-5
    with pytest.raises(ExportError, match=r"reset 'soft_deferred' cannot be written to NIR: .* export ONNX or C"):
        export_nir(model, tmp_path / "t5.nir")


def test_a_sequential_mlp_imports_flat_from_an_image_shape_or_a_feature_count(test_images: torch.Tensor) -> None:
    snn = pytest.importorskip("snntorch")
    from albsnn_compress import from_snntorch
    from albsnn_compress.formats.nir.check import snntorch_model_runner

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(FEATURES, 32, bias=False),
            nn.BatchNorm1d(32),
            snn.Leaky(beta=0.8, init_hidden=True),
            nn.Linear(32, 10),
            snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_mechanism="zero"),
        )

    torch.manual_seed(0)
    net = build()
    run = snntorch_model_runner(net, 4)
    lively_batch_norms(net, lambda images: run(images.flatten(1), False), test_images)
    for shape in ((1, 8, 8), (FEATURES,)):
        model = from_snntorch(net, shape, 4)
        assert model.spec["input"]["shape"] == [FEATURES] and model.spec["layers"][0]["type"] == "linear"
        assert model.metadata["source"].get("flattened_input", False) == (len(shape) == 3)

        def source(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            out = run(images.flatten(1), True)
            assert out.spikes is not None
            return out.logits, out.spikes

        assert assert_equivalent(model, source, test_images)["agreement"] == 1.0
    with pytest.raises(InteropError, match=r"input_shape must be three positive integers \(C, H, W\) or one \(F,\)"):
        from_snntorch(net, (8, 8), 4)
    with pytest.raises(InteropError, match=r"mean must be one or 64 finite numbers \(one per feature\)"):
        from_snntorch(net, (FEATURES,), 4, mean=[0.1, 0.2])


def test_a_spikingjelly_mlp_imports_flat(test_images: torch.Tensor) -> None:
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional, layer, neuron

    from albsnn_compress import from_spikingjelly

    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(FEATURES, 32), neuron.LIFNode(tau=2.0), layer.Linear(32, 10))
    with torch.no_grad():
        net[0].weight.mul_(4)
    model = from_spikingjelly(net, (1, 8, 8), 4)
    assert model.spec["input"]["shape"] == [FEATURES] and model.metadata["source"]["flattened_input"]
    with torch.no_grad():
        functional.reset_net(net)
        expected = torch.stack([net(test_images.flatten(1)) for _ in range(4)]).mean(0)
        assert torch.equal(model(test_images), expected)
    assert len(set(expected.argmax(1).tolist())) > 1


def test_per_channel_statistics_of_flattened_images_become_per_feature() -> None:
    assert flat_statistics([0.5], (1, 2, 2)) == [0.5]
    assert flat_statistics([0.5, 0.5, 0.5], (3, 2, 2)) == [0.5]
    assert flat_statistics([0.1, 0.2], (2, 1, 2)) == [0.1, 0.1, 0.2, 0.2]  # row-major: channel 0's pixels first
    assert flat_statistics([0.1, 0.2], (8,)) == [0.1, 0.2]
    spec = mlp_spec("cifar-mlp", [32], [3, 4, 4], 10, [0.49, 0.48, 0.45], [0.25])
    assert spec["input"]["shape"] == [48] and spec["input"]["mean"] == [0.49] * 16 + [0.48] * 16 + [0.45] * 16
    assert spec["input"]["std"] == [0.25] and [layer["type"] for layer in spec["layers"]] == [
        "linear",
        "bn",
        "lif",
        "linear",
    ]
    torch.manual_seed(0)
    images = torch.rand(3, 3, 4, 4)
    model = SpikingNet(spec).eval()
    mean = torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1)
    with torch.no_grad():  # the per-feature normalization of the flat input is the per-channel one of the images
        expected = model.layers(((images - mean) / 0.25).flatten(1).unsqueeze(0)).mean(0)
        assert torch.equal(model(images), expected)


def test_the_c_export_takes_a_flat_model() -> None:
    """A flat model has a C form (tests/test_c_flat.py runs it): compress reports its flash and RAM."""
    from albsnn_compress.formats.c.plan import plan_model
    from albsnn_compress.pipeline import c_footprint

    spec = {
        "name": "mlp",
        "input": {"shape": [64], "mean": [0.0], "std": [1.0]},
        "num_classes": 10,
        "layers": [{"type": "linear", "out_features": 16}, {"type": "lif"}, {"type": "linear", "out_features": 10}],
    }
    model = SpikingNet(spec, timesteps=2)
    plan = plan_model(model)
    assert c_footprint(model) == {"flash_bytes": plan.weight_bytes, "ram_bytes": plan.arena_bytes, "refused": None}
