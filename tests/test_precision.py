"""Weight precisions: codes, scales, the clip, bit-exact idempotence, the STE and the model API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper

from albsnn_compress.binarize import binarize_, binarized_layers, is_binarized
from albsnn_compress.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.data import load_split, load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.formats.bitpack import codes_size, pack_codes
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.formats.onnx.export import export_onnx
from albsnn_compress.precision import (
    FLOAT_BITS,
    PRECISIONS,
    layer_bits,
    precision,
    quantize_weight,
    set_precision_,
    weight_codes,
)
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.storage import layer_storage
from albsnn_compress.summary import summary

QUANTIZED = (2, 4, 8)


def _weights(seed: int, shape: tuple[int, ...] = (16, 8, 3, 3)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    heavy_tailed = torch.randn(shape, generator=generator) * torch.rand(shape, generator=generator) ** 3
    return heavy_tailed * 0.1


def test_the_registered_precisions_and_their_codes() -> None:
    assert list(PRECISIONS) == ["1", "2", "4", "8"]
    assert [precision(bits).max_code for bits in (1, 2, 4, 8)] == [1, 1, 7, 127]
    with pytest.raises(CompressionError, match=r"unknown precision '3'; choose one of \['1', '2', '4', '8'\]"):
        precision(3)


@pytest.mark.parametrize("bits", QUANTIZED)
def test_codes_are_symmetric_integers_and_the_weights_are_codes_times_scale(bits: int) -> None:
    weight = _weights(bits)
    codes, scale = weight_codes(weight, bits)
    assert codes.dtype == torch.int8 and codes.shape == weight.shape and scale.shape == (16,)
    top = precision(bits).max_code
    assert int(codes.min()) >= -top and int(codes.max()) <= top
    assert (codes.flatten(1).abs().amax(dim=1) == top).all()  # every channel reaches its clip
    expected = (codes.double() * scale.view(-1, 1, 1, 1)).float()
    assert torch.equal(quantize_weight(weight, bits), expected)


@pytest.mark.parametrize("bits", QUANTIZED)
@pytest.mark.parametrize("seed", range(20))
def test_quantizing_twice_changes_no_bit(bits: int, seed: int) -> None:
    weight = _weights(seed, (7, 5, 3, 3) if seed % 2 else (10, 33))
    weight[0] = 0.0  # an all-zero channel stays zero
    once = quantize_weight(weight, bits)
    assert torch.equal(quantize_weight(once, bits), once)
    assert torch.equal(once[0], torch.zeros_like(once[0]))


def test_quantizing_a_trained_network_twice_changes_no_bit(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    for name, bits in layer_bits(model).items():
        assert bits == FLOAT_BITS, name
        weight = dict(model.named_modules())[name].weight.detach()
        for wanted in QUANTIZED:
            once = quantize_weight(weight, wanted)
            assert torch.equal(quantize_weight(once, wanted), once), (name, wanted)


@pytest.mark.parametrize(("bits", "at_most"), [(2, 0.6), (4, 0.95)])
def test_the_searched_clip_beats_the_largest_weight_at_few_bits(bits: int, at_most: float) -> None:
    weight = _weights(7, (32, 64))
    top = precision(bits).max_code
    scale = weight.abs().amax(dim=1, keepdim=True) / top
    max_abs = torch.clamp(torch.round(weight / scale), -top, top) * scale
    searched = quantize_weight(weight, bits)
    assert ((searched - weight) ** 2).sum() < at_most * ((max_abs - weight) ** 2).sum()  # measured: 0.55, 0.90


def test_eight_bits_keep_the_largest_weight_and_lose_under_half_a_step() -> None:
    weight = _weights(3)
    quantized = quantize_weight(weight, 8)
    step = weight.flatten(1).abs().amax(dim=1) / 127
    assert torch.equal(quantized.flatten(1).abs().amax(dim=1), weight.flatten(1).abs().amax(dim=1))
    assert ((quantized - weight).flatten(1).abs().amax(dim=1) <= step / 2 * (1 + 1e-6)).all()


def test_the_gradient_passes_inside_the_clip_and_stops_outside() -> None:
    # ternary: sixteen weights of +-0.5 fit best with the clip near 0.5, which clips the outlier 1.0
    weight = torch.tensor([[0.5] * 8 + [-0.5] * 8 + [1.0]], requires_grad=True)
    _, scale = weight_codes(weight, 2)
    assert 0.5 <= float(scale[0]) * precision(2).max_code < 1.0
    quantize_weight(weight, 2).sum().backward()
    assert weight.grad is not None
    assert weight.grad.tolist() == [[1.0] * 16 + [0.0]]


def test_a_model_takes_and_drops_precisions_per_layer(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    names = list(layer_bits(model))
    images = torch.rand(4, *model.spec["input"]["shape"])
    with torch.no_grad():
        float_out = model(images)
        set_precision_(model, {names[0]: 8, names[1]: 1, names[2]: 4})
        assert layer_bits(model) == {names[0]: 8, names[1]: 1, names[2]: 4, **{n: FLOAT_BITS for n in names[3:]}}
        assert is_binarized(dict(model.named_modules())[names[1]])
        quantized_out = model(images)
        assert not torch.equal(quantized_out, float_out)
        set_precision_(model, {names[2]: 2})  # 4 -> 2 bits, from the latent weights
        assert layer_bits(model)[names[2]] == 2
        set_precision_(model, dict.fromkeys(names, FLOAT_BITS))  # back to float: the latent weights
        assert torch.equal(model(images), float_out)


def test_one_bit_through_the_precision_api_is_binarize(digits_checkpoint: Path) -> None:
    first, second = load_checkpoint(digits_checkpoint), load_checkpoint(digits_checkpoint)
    name = list(layer_bits(first))[1]
    set_precision_(first, {name: 1})
    binarize_(second, [name])
    images = torch.rand(3, *first.spec["input"]["shape"])
    with torch.no_grad():
        assert torch.equal(first(images), second(images))


def test_keep_values_hands_the_quantized_values_to_the_next_precision(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    name = list(layer_bits(model))[1]
    module = dict(model.named_modules())[name]
    set_precision_(model, {name: 4})
    four_bit = module.weight.detach().clone()
    set_precision_(model, {name: 8}, keep_values=True)  # 8 bits of the 4-bit values: the same values
    assert torch.equal(module.weight.detach(), quantize_weight(four_bit, 8))


@pytest.mark.parametrize(
    ("bits", "message"),
    [({"layers.nothere": 8}, "no conv or linear layer named 'layers.nothere'"), ({"CONV": 3}, "unknown precision")],
)
def test_bad_requests_are_refused_naming_the_choices(
    digits_checkpoint: Path, bits: dict[str, int], message: str
) -> None:
    model = load_checkpoint(digits_checkpoint)
    request = {list(layer_bits(model))[0] if k == "CONV" else k: v for k, v in bits.items()}
    with pytest.raises(CompressionError, match=message):
        set_precision_(model, request)


def _mixed(digits_checkpoint: Path) -> tuple[torch.nn.Module, list[str]]:
    model = load_checkpoint(digits_checkpoint)
    names = list(layer_bits(model))
    set_precision_(model, {names[1]: 4, names[2]: 1, names[3]: 8})
    return model, names


def test_a_checkpoint_keeps_each_layers_precision_and_computes_the_same_bits(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    model, names = _mixed(digits_checkpoint)
    save_checkpoint(tmp_path / "mixed.pt", model, {"dataset": "digits"})
    checkpoint = read_checkpoint(tmp_path / "mixed.pt")
    assert checkpoint.precisions == {names[1]: 4, names[3]: 8} and checkpoint.binarized == [names[2]]
    again = checkpoint.build()
    assert layer_bits(again) == layer_bits(model)
    images = load_split("digits", None, "test").as_float()
    with torch.no_grad():
        assert torch.equal(again(images), model.eval()(images))
    save_checkpoint(tmp_path / "float.pt", load_checkpoint(digits_checkpoint))
    assert "precisions" not in torch.load(tmp_path / "float.pt", weights_only=True)  # float files are as before


def test_storage_and_summary_count_k_bits_and_a_scale_per_channel(digits_checkpoint: Path) -> None:
    model, names = _mixed(digits_checkpoint)
    rows = {row.name: row for row in layer_storage(model, binarized_layers(model))}
    for name, bits in ((names[1], 4), (names[2], 1), (names[3], 8), (names[0], FLOAT_BITS)):
        weight = dict(model.named_modules())[name].weight
        scale_bits = weight.shape[0] * FLOAT_BITS if bits != FLOAT_BITS else 0
        assert rows[name].weight_bits == bits
        assert rows[name].parts_after["weight"] == weight.numel() * bits
        assert rows[name].parts_after.get("weight_scale", 0) == scale_bits
    table = {row.name: row.precision for row in summary(model).rows}
    shown = [table[name] for name in names[:4]]
    assert shown == ["float32", "4-bit", "1-bit", "8-bit"]


def test_the_container_packs_k_bit_layers_and_reads_them_back_at_their_bits(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    """The container stores a k-bit layer's codes at its bits (format version 2, tests/test_container_kbit.py) and
    reads the layer back at those bits, computing the same outputs bit for bit."""
    model, names = _mixed(digits_checkpoint)
    images = load_split("digits", None, "test").as_float()[:64]
    with torch.no_grad():
        expected = model.eval()(images)
    write_container(tmp_path / "mixed.albsnn", model)
    container = read_container(tmp_path / "mixed.albsnn")
    with torch.no_grad():
        assert torch.equal(container.model(images), expected)
    assert container.version == 2 and layer_bits(container.model) == layer_bits(model)
    assert container.header["precisions"] == {names[1]: 4, names[3]: 8} and container.header["binarized"] == [names[2]]
    weight = dict(model.named_modules())[names[1]].weight
    assert container.tensors[f"{names[1]}.weight"].nbytes == codes_size(weight.numel(), 4)


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("bits", QUANTIZED)
def test_onnx_packs_k_bit_codes_and_onnxruntime_computes_the_model(
    digits_checkpoint: Path, tmp_path: Path, bits: int
) -> None:
    model = load_checkpoint(digits_checkpoint)
    names = list(layer_bits(model))
    set_precision_(model, dict.fromkeys(names[1:-1], bits))
    test = load_split("digits", None, "test")
    images = test.as_float()
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    export_onnx(model, tmp_path / "packed.onnx")
    export_onnx(model, tmp_path / "float.onnx", weights="float")
    stored = _initializers(tmp_path / "packed.onnx")
    for name in names[1:-1]:
        weight = dict(model.named_modules())[name].weight
        codes = stored[f"{name.rsplit('.', 1)[-1]}.codes"]
        assert codes.dtype == (np.int8 if bits == 8 else np.uint8)
        assert codes.nbytes == codes_size(weight.numel(), bits)
        assert codes.tobytes() == pack_codes(weight_codes(weight.detach(), bits)[0], bits)
    float_bytes = sum(array.nbytes for array in _initializers(tmp_path / "float.onnx").values())
    packed_bytes = sum(array.nbytes for array in stored.values())
    assert packed_bytes < float_bytes * (bits / 32 + 0.35)  # conv1, the last layer and batch norms stay float
    session = onnxruntime.InferenceSession(str(tmp_path / "packed.onnx"))
    logits = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    assert np.abs(logits - expected).max() < 1e-4  # the scale is applied in float32 in the graph
    assert (logits.argmax(1) == expected.argmax(1)).mean() > 0.99


def test_the_search_refuses_an_input_k_bit_layer_by_name_instead_of_stacking_on_it(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    name = list(layer_bits(model))[2]
    set_precision_(model, {name: 4})
    splits = load_splits("digits", None)
    with pytest.raises(CompressionError, match=rf"layer {name} is 4-bit; the search starts from float"):
        compress(model, splits["train"], splits["val"], 1.0, config=SearchConfig(epochs=0.1))
    assert layer_bits(model)[name] == 4  # refused before anything changed
