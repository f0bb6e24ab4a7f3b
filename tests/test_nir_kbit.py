"""NIR and 2-8-bit layers: the values written as float32, the structure recorded (``albsnn_bits``,
``albsnn_scale``) and checked when read, and snnTorch's and SpikingJelly's importers agree with PyTorch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from albsnn_compress import export_nir, read_nir  # noqa: E402
from albsnn_compress.binarize import candidate_layers  # noqa: E402
from albsnn_compress.data import load_split  # noqa: E402
from albsnn_compress.errors import NirError  # noqa: E402
from albsnn_compress.formats.nir.check import compare, snntorch_runner, spikingjelly_runner  # noqa: E402
from albsnn_compress.formats.nir.mapping import KBIT_TOLERANCE  # noqa: E402
from albsnn_compress.formats.nir.write import build_nir_graph  # noqa: E402
from albsnn_compress.precision import layer_bits, set_precision_  # noqa: E402
from albsnn_compress.snn.spec import SpikingNet  # noqa: E402
from albsnn_compress.training.train_model import resolve_architecture  # noqa: E402
from tests.test_nir_write import lively  # noqa: E402

MIXED = {"layers.conv1": 8, "layers.conv2": 4, "layers.conv3": 2, "layers.conv4": 1}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_split("digits", None, "test").as_float()


@pytest.fixture(scope="module")
def mixed(digits: torch.Tensor) -> SpikingNet:
    """digits-small with lively spikes: conv1 8-bit, conv2 4-bit, conv3 2-bit, conv4 binary, the last in float."""
    model = lively(resolve_architecture("digits-small", "digits"), digits, timesteps=1, binarize=False)
    assert list(MIXED) == candidate_layers(model, include_first_last=True)[:4]
    return set_precision_(model, MIXED).eval()


def test_k_bit_nodes_record_their_bits_and_a_scale_their_weights_are_integer_multiples_of(mixed: SpikingNet) -> None:
    graph, info = build_nir_graph(mixed)
    assert info.quantized_layers == {"conv1": 8, "conv2": 4, "conv3": 2} and info.binary_layers == ("conv4",)
    assert graph.metadata["albsnn_quantized_layers"] == "conv1:8,conv2:4,conv3:2"
    for name, bits in info.quantized_layers.items():
        node = graph.nodes[name]
        limit = 2 ** (bits - 1) - 1
        weight = node.weight.reshape(node.weight.shape[0], -1).astype(np.float64)
        scale = node.metadata["albsnn_scale"].astype(np.float64)
        codes = np.rint(weight / scale[:, None])
        assert node.metadata["albsnn_bits"] == bits and np.abs(codes).max() == limit
        assert (np.abs(weight - codes * scale[:, None]) <= KBIT_TOLERANCE * np.abs(codes * scale[:, None])).all()
        if bits == 2:
            assert set(np.unique(codes)) <= {-1.0, 0.0, 1.0}  # ternary
    assert "albsnn_bits" not in graph.nodes["conv5"].metadata


def test_a_float_or_binary_model_writes_no_quantized_record(digits: torch.Tensor) -> None:
    graph, info = build_nir_graph(lively(resolve_architecture("digits-small", "digits"), digits, timesteps=1))
    assert info.quantized_layers == {} and "albsnn_quantized_layers" not in graph.metadata


@pytest.mark.parametrize("timesteps", [1, 4])
def test_snntorch_and_spikingjelly_run_a_mixed_precision_file_like_pytorch(
    mixed: SpikingNet, digits: torch.Tensor, timesteps: int, tmp_path: Path
) -> None:
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")
    mixed.timesteps = timesteps
    try:
        export_nir(mixed, tmp_path / "m.nir")
        for runner in (
            spikingjelly_runner(tmp_path / "m.nir", timesteps),
            snntorch_runner(tmp_path / "m.nir", timesteps),
        ):
            agreement = compare(mixed, runner, digits)
            assert not agreement.unexplained, agreement.to_dict()  # only threshold ties may differ
            assert agreement.prediction_agreement >= 0.99, agreement.to_dict()
            assert agreement.max_logit_diff_untied <= 1e-4, agreement.to_dict()
    finally:
        mixed.timesteps = 1


def test_our_reader_reads_k_bit_layers_as_their_float_values(mixed: SpikingNet, digits: torch.Tensor, tmp_path: Path):
    export_nir(mixed, tmp_path / "m.nir")
    back = read_nir(tmp_path / "m.nir")
    assert layer_bits(back)["layers.conv4"] == 1 and layer_bits(back)["layers.conv2"] == 32
    with torch.no_grad():
        assert (back(digits).argmax(1) == mixed(digits).argmax(1)).float().mean() >= 0.99


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda node: node.metadata.update(albsnn_bits=3), "albsnn_bits is 3; our writer records 2, 4 or 8"),
        (lambda node: node.metadata.update(albsnn_scale=node.metadata["albsnn_scale"] * 0.5), "integer |q| <= 7"),
        (lambda node: node.weight.__setitem__((0, 0, 0, 0), node.weight[0, 0, 0, 0] * 1.01 + 1e-3), "but they are not"),
        (lambda node: node.metadata.update(albsnn_scale=-node.metadata["albsnn_scale"]), "one value >= 0"),
        (lambda node: node.metadata.update(albsnn_scale=node.metadata["albsnn_scale"][:2]), "one value >= 0"),
    ],
    ids=["bits", "scale-halved", "weight", "negative-scale", "short-scale"],
)
def test_a_false_k_bit_record_is_refused_in_one_line(mixed: SpikingNet, tmp_path: Path, tamper, problem: str) -> None:
    export_nir(mixed, tmp_path / "m.nir")
    graph = nir.read(tmp_path / "m.nir")
    tamper(graph.nodes["conv2"])
    nir.write(tmp_path / "bad.nir", graph)
    with pytest.raises(NirError, match=r"node 'conv2' \(Conv2d\): ") as error:
        read_nir(tmp_path / "bad.nir")
    assert problem in str(error.value) and "\n" not in str(error.value)
