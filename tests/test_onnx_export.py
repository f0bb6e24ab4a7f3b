"""ONNX export: valid models, onnxruntime agrees with PyTorch, 1-bit storage, determinism, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, binary_scale, candidate_layers
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_signs, packed_size
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.formats.onnx.export import build_onnx_model, export_onnx
from albsnn_compress.snn.recording import lif_modules, record_outputs
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from tests.clihelp import run_cli

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
OPT_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
FULL_SUBSET = 2000  # images for the main case with packed weights
FLOAT_SUBSET = 500  # float weights: the same graph without the unpacking
SMALL_SUBSET = 160  # images for the other cases (keeps the file near 30 s on 2 shared cores)
CHUNK = 250  # batch size of every run


@pytest.fixture(scope="module")
def test_images() -> tuple[str, torch.Tensor]:
    """Real FashionMNIST test images where ../shared/datasets exists, else the bundled digits."""
    if (DATASETS / "FashionMNIST").is_dir():
        data, dataset = load_split("fashion-mnist", DATASETS, "test"), "fashion-mnist"
    else:
        data, dataset = load_split("digits", None, "test"), "digits"
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:FULL_SUBSET]
    return dataset, data.as_float(order)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: faster than two on the shared cores, and restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _groups_spec(dataset: str) -> dict[str, Any]:
    """Grouped, strided and 5x5 convs with bias, max pooling, BN1d and a non-default neuron."""
    spec = resolve_architecture("digits-fc", dataset)
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
        {"type": "linear", "out_features": spec["num_classes"]},
    ]
    return spec


def _no_lif_spec(dataset: str) -> dict[str, Any]:
    """A stateless network: its output is the same at every step (the shared-input path)."""
    spec = resolve_architecture("digits-fc", dataset)
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "conv", "out_channels": spec["num_classes"], "kernel_size": 1},
        {"type": "gap"},
    ]
    return spec


def _make_model(
    spec: dict[str, Any],
    timesteps: int,
    images: torch.Tensor,
    binarize: str,
    taus: dict[str, torch.Tensor] | None = None,
) -> SpikingNet:
    """A random-init network with lively spikes: random BN affine params, stats from real images.

    ``taus`` sets per-channel time constants (module name -> values) before the statistics are gathered.
    """
    torch.manual_seed(0)
    model = SpikingNet(spec, timesteps)
    for name, values in (taus or {}).items():
        model.get_submodule(name).tau.copy_(values)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None  # running statistics = the plain average over the batches below
    names = (
        candidate_layers(model)
        if binarize == "candidates"
        else [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][1:]
    )
    binarize_(model, names)
    model.train()
    with torch.no_grad():
        for batch in images[:128].split(64):
            model(batch)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def _flat_spec(dataset: str) -> dict[str, Any]:
    """An MLP on the images flattened (issue 31): a flat input with one mean per feature, linear, BN1d and LIF only."""
    images = resolve_architecture("digits-fc", dataset)["input"]
    features = int(np.prod(images["shape"]))
    return {
        "name": "flat-mlp",
        "input": {"shape": [features], "mean": [0.1 + 0.2 * (i % 3) for i in range(features)], "std": images["std"]},
        "num_classes": 10,
        "layers": [
            {"type": "linear", "out_features": 48, "bias": False},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 32},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 10},
        ],
    }


def _per_channel_spec(dataset: str) -> dict[str, Any]:
    """fmnist-vgg with per-channel time constants in every LIF layer (snnTorch's learned per-channel beta)."""
    spec = resolve_architecture("fmnist-vgg", dataset)
    for layer in spec["layers"]:
        if layer["type"] == "lif":
            layer["per_channel"] = ["tau"]
    return spec


# (id, spec builder or preset, T, neuron settings, which layers to binarize, images)
CASES = [
    ("gap-T1-hard", "fmnist-vgg", 1, {"reset": "hard"}, "candidates", FULL_SUBSET),
    ("gap-T1-soft", "fmnist-vgg", 1, {"reset": "soft"}, "candidates", SMALL_SUBSET),
    ("gap-T3-hard", "fmnist-vgg", 3, {"reset": "hard"}, "candidates", SMALL_SUBSET),
    ("gap-T3-soft", "fmnist-vgg", 3, {"reset": "soft"}, "candidates", SMALL_SUBSET),
    ("fc-T3-hard", "digits-fc", 3, {"reset": "hard"}, "all-but-first", SMALL_SUBSET),
    ("groups-T2", _groups_spec, 2, {"reset": "hard"}, "all-but-first", SMALL_SUBSET),
    ("no-lif-T2", _no_lif_spec, 2, {"reset": "hard"}, "all-but-first", SMALL_SUBSET),
    # neuron variants (the forms snnTorch, SpikingJelly and NIR neurons need)
    ("if-T3-soft", "fmnist-vgg", 3, {"leak": False, "reset": "soft"}, "candidates", SMALL_SUBSET),
    ("state-decay-T3", "fmnist-vgg", 3, {"decay_input": False, "tau": 1.5, "v_reset": 0.1}, "candidates", SMALL_SUBSET),
    (
        "strict-deferred-T3",
        "fmnist-vgg",
        3,
        {"strict_threshold": True, "reset": "soft_deferred"},
        "candidates",
        SMALL_SUBSET,
    ),
    ("no-reset-T3", "fmnist-vgg", 3, {"reset": "none", "tau": 1.5}, "candidates", SMALL_SUBSET),
    # flat input: an MLP fed the images flattened (onnxruntime takes [batch, F])
    ("flat-mlp-T3-hard", _flat_spec, 3, {"reset": "hard"}, "all-but-first", SMALL_SUBSET),
    (
        "flat-mlp-T3-deferred",
        _flat_spec,
        3,
        {"reset": "soft_deferred", "decay_input": False},
        "candidates",
        SMALL_SUBSET,
    ),
    ("per-channel-tau-T3", _per_channel_spec, 3, {"decay_input": False}, "candidates", SMALL_SUBSET),
]


def _case_model(case: tuple[Any, ...], dataset: str, images: torch.Tensor) -> SpikingNet:
    _, arch, timesteps, neuron, binarize, _ = case
    spec = arch(dataset) if callable(arch) else resolve_architecture(arch, dataset)
    spec["neuron"] = {**spec.get("neuron", {}), **neuron}
    torch.manual_seed(1)
    model = SpikingNet(spec, timesteps)
    per_channel = {
        name: torch.rand(m.tau.shape) * 2 + 1
        for name, m in model.named_modules()
        if "tau" in getattr(m, "per_channel", ())
    }
    model = _make_model(spec, timesteps, images, binarize, per_channel)
    return model


def _session(proto: onnx.ModelProto, level: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVELS[level]
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _feed(proto: onnx.ModelProto, images: torch.Tensor) -> dict[str, np.ndarray]:
    """``images`` as the graph takes them: ``[batch, C, H, W]``, or flattened row-major for a flat model."""
    rank = len(proto.graph.input[0].type.tensor_type.shape.dim)
    return {"images": (images if rank == 4 else images.flatten(1)).numpy()}


def _run_ort(proto: onnx.ModelProto, images: torch.Tensor, level: str) -> np.ndarray:
    session = _session(proto, level)
    return np.concatenate([session.run(["logits"], _feed(proto, b))[0] for b in images.split(CHUNK)])


def _torch_spikes(model: SpikingNet, images: torch.Tensor) -> list[torch.Tensor]:
    """Every LIF layer's spikes ``[T, B, ...]`` for ``images``, in layer order."""
    with record_outputs(lif_modules(model)) as outputs, torch.inference_mode():
        model(images)
    return [calls[0] for calls in outputs]


def _check_flips_are_ties(
    model: SpikingNet,
    proto: onnx.ModelProto,
    level: str,
    images: torch.Tensor,
    rows: np.ndarray,
    cache: dict[int, list[torch.Tensor]],
) -> None:
    """Each image in ``rows`` (logits off) must first differ in a spike whose membrane sits on the threshold.

    Layer L, step t depends only on earlier layers and earlier steps, so at the
    first differing (layer, step) both runtimes saw the same spikes and their
    membranes differ by float rounding only (conv sums in another order): a spike
    can flip there only if the membrane is within rounding of ``v_threshold``.
    """
    tapped = onnx.ModelProto()
    tapped.CopyFrom(proto)
    # one spike comparison H >= v_th per LIF layer and step, in that order
    taps = [(n.input[0], n.output[0]) for n in proto.graph.node if n.op_type in ("GreaterOrEqual", "Greater")]
    tapped.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for pair in taps for name in pair)
    session = _session(tapped, level)
    threshold, steps = model.spec["neuron"]["v_threshold"], model.timesteps
    for row in rows:
        start = row - row % CHUNK  # the same batch as the reference run (some conv algorithms depend on it)
        if start not in cache:
            cache[start] = _torch_spikes(model, images[start : start + CHUNK])
        torch_spikes = [s[:, row - start].numpy() for s in cache[start]]
        outputs = session.run(None, _feed(proto, images[row : row + 1]))
        for k in range(len(taps)):
            h, spike = outputs[1 + 2 * k][0], outputs[2 + 2 * k][0]
            differ = spike != (torch_spikes[k // steps][k % steps] > 0)
            if differ.any():
                margin = float(np.abs(h[differ] - threshold).max())
                assert margin <= 1e-4, f"image {row}: spike flip {margin:.3g} away from the threshold (tap {k})"
                break
        else:
            raise AssertionError(f"image {row}: logits differ although every spike agrees")


def _expected_payload(model: SpikingNet) -> int:
    """Bytes the weights need: ceil(n/8) per binarized weight tensor, 4 per float (incl. alpha and BN stats)."""
    total = 0
    for module in model.layers:
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module in {
            model.get_submodule(n) for n in binarized_layers(model)
        }:
            total += packed_size(module.weight.numel()) + 4 * module.weight.shape[0]
        elif hasattr(module, "weight") and module.weight is not None:
            total += 4 * module.weight.numel()
        for key in ("bias", "running_mean", "running_var"):
            value = getattr(module, key, None)
            total += 4 * value.numel() if value is not None else 0
    return total


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnxruntime_matches_pytorch(case: tuple[Any, ...], test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    images = images[: case[-1]]
    model = _case_model(case, dataset, images)
    assert binarized_layers(model)
    with torch.inference_mode():
        reference = torch.cat([model(b) for b in images.split(CHUNK)]).numpy()
    assert len(np.unique(reference.argmax(axis=1))) > 1, "degenerate model: every image gets the same class"
    tolerance = 1e-4 * max(1.0, float(np.abs(reference).max()))
    spikes: dict[int, list[torch.Tensor]] = {}
    for weights, count in (("packed", len(images)), ("float", min(len(images), FLOAT_SUBSET))):
        proto = build_onnx_model(model, weights=weights)
        onnx.checker.check_model(proto, full_check=True)
        for level in OPT_LEVELS:
            logits = _run_ort(proto, images[:count], level)
            agree = (logits.argmax(axis=1) == reference[:count].argmax(axis=1)).mean()
            assert agree >= 0.999, f"{weights}/{level}: predictions agree on {agree:.2%}"
            off = np.flatnonzero(np.abs(logits - reference[:count]).max(axis=1) > tolerance)
            assert len(off) <= 0.01 * count, f"{weights}/{level}: logits differ on {len(off)} images"
            _check_flips_are_ties(model, proto, level, images, off, spikes)


def test_flip_check_rejects_a_wrong_threshold(test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    images = images[:SMALL_SUBSET]
    model = _case_model(CASES[5], dataset, images)  # v_threshold 0.8
    proto = build_onnx_model(model)
    scalars = [t for t in proto.graph.initializer if not t.dims and t.data_type == onnx.TensorProto.FLOAT]
    (threshold,) = [t for t in scalars if onnx.numpy_helper.to_array(t) == np.float32(0.8)]
    threshold.CopyFrom(onnx.numpy_helper.from_array(np.array(0.81, dtype=np.float32), threshold.name))
    with torch.inference_mode():
        reference = model(images).numpy()
    off = np.flatnonzero(np.abs(_run_ort(proto, images, "all") - reference).max(axis=1) > 1e-4)
    assert len(off) > 0.5 * len(images)
    with pytest.raises(AssertionError, match="spike flip .* away from the threshold"):
        _check_flips_are_ties(model, proto, "all", images, off[:3], {})


def test_packed_bits_are_the_bitpack_layout_and_alpha_folds_into_bn(test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[5], dataset, images)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in build_onnx_model(model).graph.initializer}
    for name in binarized_layers(model):
        short = name.removeprefix("layers.")
        assert inits[f"{short}.bits"].dtype == np.uint8
        assert inits[f"{short}.bits"].tobytes() == pack_signs(model.get_submodule(name).weight)
        assert f"{short}.w" not in inits
    assert "conv1.w" in inits  # the first layer stays float
    # conv2 has a bias and conv3 feeds a max pool: both keep alpha; linear1 (no bias) -> bn4 folds it
    np.testing.assert_array_equal(inits["conv2.alpha"].reshape(-1), binary_scale(model.layers.conv2.weight).numpy())
    assert "conv3.alpha" in inits and "linear1.alpha" not in inits
    alpha = binary_scale(model.layers.linear1.weight).double().numpy()
    gamma = model.layers.bn4.weight.detach().double().numpy()
    np.testing.assert_array_equal(inits["bn4.gamma"], (gamma * alpha).astype(np.float32))


def test_zero_scale_is_not_folded_and_still_matches(test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[0], dataset, images[:200])
    with torch.no_grad():
        model.layers.conv3.parametrizations.weight.original[5].zero_()
    assert binary_scale(model.layers.conv3.weight)[5] == 0
    proto = build_onnx_model(model)
    assert "conv3.alpha" in {t.name for t in proto.graph.initializer}
    assert "conv2.alpha" not in {t.name for t in proto.graph.initializer}
    with torch.inference_mode():
        reference = model(images[:200]).numpy()
    np.testing.assert_allclose(_run_ort(proto, images[:200], "all"), reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]], ids=["gap-T1", "gap-T3", "fc-T3"])
def test_packed_file_size_follows_the_payload(
    case: tuple[Any, ...], tmp_path: Path, test_images: tuple[str, torch.Tensor]
) -> None:
    dataset, images = test_images
    model = _case_model(case, dataset, images[:200])
    payload = _expected_payload(model)
    export_onnx(model, tmp_path / "packed.onnx")
    size = (tmp_path / "packed.onnx").stat().st_size
    assert abs(size - payload) <= 0.1 * payload + 4096, f"{size} bytes for a {payload}-byte payload"


def test_packed_file_is_much_smaller_than_float(tmp_path: Path, test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[2], dataset, images[:200])  # fmnist-vgg, every candidate conv binarized
    export_onnx(model, tmp_path / "packed.onnx")
    export_onnx(model, tmp_path / "float.onnx", weights="float")
    assert (tmp_path / "packed.onnx").stat().st_size * 8 < (tmp_path / "float.onnx").stat().st_size


def test_model_header_is_deterministic_and_self_contained(
    tmp_path: Path, test_images: tuple[str, torch.Tensor]
) -> None:
    dataset, images = test_images
    model = _case_model(CASES[4], dataset, images[:200])
    export_onnx(model, tmp_path / "a.onnx")
    export_onnx(model, tmp_path / "b.onnx")
    data = (tmp_path / "a.onnx").read_bytes()
    assert data == (tmp_path / "b.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]  # no temporary files left
    proto = onnx.load_from_string(data)
    assert proto.ir_version == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 18)]
    assert all(n.domain == "" for n in proto.graph.node)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert {"BitShift", "BitwiseAnd"} <= {n.op_type for n in proto.graph.node}
    assert not {"BitShift", "BitwiseAnd"} & {n.op_type for n in build_onnx_model(model, weights="float").graph.node}
    batch, shape = proto.graph.input[0].type.tensor_type.shape.dim[0], proto.graph.output[0].type.tensor_type.shape
    assert (proto.graph.input[0].name, batch.dim_param) == ("images", "batch")
    assert [d.dim_param or d.dim_value for d in shape.dim] == ["batch", 10]


def test_newer_opset_sets_its_ir_version(test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[6], dataset, images[:64])
    proto = build_onnx_model(model, opset=21)
    assert proto.ir_version == 10
    with torch.inference_mode():
        reference = model(images[:64]).numpy()
    np.testing.assert_allclose(_run_ort(proto, images[:64], "all"), reference, rtol=0, atol=1e-5)


def test_export_errors_are_one_line(test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[6], dataset, images[:64])
    with pytest.raises(ExportError, match=r"unknown weights mode 'half'; choose one of \['packed', 'float'\]"):
        build_onnx_model(model, weights="half")
    with pytest.raises(ExportError, match=r"opset 17 is not supported; the graph needs 18"):
        build_onnx_model(model, opset=17)
    with pytest.raises(ExportError, match=r"expected a SpikingNet .* got Sequential"):
        build_onnx_model(nn.Sequential())  # type: ignore[arg-type]
    model.layers.gap1 = nn.Identity()
    with pytest.raises(ExportError, match=r"layer gap1: cannot export Identity to ONNX") as caught:
        build_onnx_model(model)
    assert "\n" not in str(caught.value)


def test_cli_exports_a_container(tmp_path: Path, test_images: tuple[str, torch.Tensor]) -> None:
    dataset, images = test_images
    model = _case_model(CASES[4], dataset, images[:200])
    write_container(tmp_path / "m.albsnn", model)
    run_cli(["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "m.onnx")])
    run_cli(["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "f.onnx"), "--onnx-weights", "float"])
    assert (tmp_path / "m.onnx").read_bytes() == build_onnx_model(model).SerializeToString()
    assert (tmp_path / "f.onnx").read_bytes() == build_onnx_model(model, weights="float").SerializeToString()
    result = run_cli(
        ["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "x.onnx"), "--onnx-weights", "half"], 2
    )
    assert "'half' is not one of 'packed', 'float'" in result.stderr
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "no" / "x.onnx")], 2)
    assert "does not exist; create it first" in result.stderr
