"""Container format version 2: layers of 2, 4 and 8 bits packed at their bits, read back bit-exactly.

Round trips of a trained digits model at each precision (alone and mixed with
binarized layers), the sizes they save, the version rule (a model without k-bit
layers still writes version 1, byte for byte), the golden version-2 file and its
documented preamble, and malformed version-2 files, one enum case and one builder
each (as in tests/test_container_malformed.py), plus random byte flips.
"""

from __future__ import annotations

import enum
import math
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albsnn_compress.binarize import binarize_, binarized_layers
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data.registry import load_split
from albsnn_compress.errors import ContainerError
from albsnn_compress.formats.bitpack import codes_size, pack_codes, unpack_codes
from albsnn_compress.formats.container.file import (
    Container,
    container_bytes,
    container_summary,
    read_container,
    write_container,
)
from albsnn_compress.formats.container.header import ALIGNMENT, PREAMBLE, crc32
from albsnn_compress.precision import FLOAT_BITS, layer_bits, set_precision_, weight_codes
from albsnn_compress.snn.spec import SpikingNet
from tests.test_container_malformed import _edit, _set, _split, _tensor

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
V2 = (GOLDEN / "kbit_mixed.albsnn").read_bytes()  # conv1 int8, conv2 int4, conv3 int2, linear1 binary
QUANTIZED = (2, 4, 8)


def _middle(model: SpikingNet) -> list[str]:
    """The conv and linear layers but the first and the last (the candidates of a search)."""
    return list(layer_bits(model))[1:-1]


def _data_start(path: Path) -> int:
    return PREAMBLE.size + PREAMBLE.unpack_from(path.read_bytes())[3]


def _assert_reads_back_exactly(path: Path, model: SpikingNet) -> Container:
    """The file reads to a model with the same precisions, tensors and digits test logits, and rewrites to itself."""
    container = read_container(path)
    assert layer_bits(container.model) == layer_bits(model)
    modules, read_modules = dict(model.named_modules()), dict(container.model.named_modules())
    for name in container.tensors:
        module, _, attr = name.rpartition(".")
        if not attr.endswith(("_scale", "_clip")):  # effective tensors: k-bit weights as codes * clip / Q
            assert torch.equal(getattr(read_modules[module], attr), getattr(modules[module], attr)), name
    images = load_split("digits", None, "test").as_float()
    with torch.no_grad():
        logits = container.model(images)
        assert torch.equal(logits, model.eval()(images))
    assert len(logits.unique(dim=0)) > 1, "the model ignores its input: the test would prove little"
    assert container_bytes(container.model) == path.read_bytes()  # quantizing is idempotent, bit for bit
    return container


def _as_float(model: SpikingNet) -> SpikingNet:
    """The same model with every layer in float, computing the values it computed (what version 1 stored)."""
    set_precision_(model, dict.fromkeys(layer_bits(model), FLOAT_BITS), keep_values=True)
    return model


@pytest.mark.parametrize("bits", QUANTIZED)
def test_k_bit_layers_are_packed_at_their_bits_and_read_back_bit_exactly(
    digits_checkpoint: Path, tmp_path: Path, bits: int
) -> None:
    model = load_checkpoint(digits_checkpoint)
    middle = _middle(model)
    set_precision_(model, dict.fromkeys(middle, bits))
    path = tmp_path / "kbit.albsnn"
    write_container(path, model)
    container = _assert_reads_back_exactly(path, model)
    assert container.version == 2 and PREAMBLE.unpack_from(path.read_bytes())[1] == 2
    assert container.header["precisions"] == dict.fromkeys(middle, bits) and container.header["binarized"] == []
    modules, stored, start = dict(model.named_modules()), path.read_bytes(), _data_start(path)
    for name in middle:
        weight = modules[name].weight.detach()
        entry = container.tensors[f"{name}.weight"]
        assert (entry.kind, entry.shape, entry.nbytes) == (
            f"int{bits}",
            tuple(weight.shape),
            codes_size(weight.numel(), bits),
        )
        packed = stored[start + entry.offset : start + entry.end]
        assert packed == pack_codes(weight_codes(weight, bits)[0], bits)
        clip = container.tensors[f"{name}.weight_clip"]
        assert (clip.kind, clip.shape, clip.offset) == (
            "float32",
            weight.shape[:1],
            -(-entry.end // ALIGNMENT) * ALIGNMENT,
        )


@pytest.mark.parametrize("bits", QUANTIZED)
def test_a_k_bit_file_saves_what_its_codes_save_over_version_1(
    digits_checkpoint: Path, tmp_path: Path, bits: int
) -> None:
    """Each k-bit weight of n values and C channels takes ceil(n k / 8) + 4 C bytes instead of 4 n."""
    model = load_checkpoint(digits_checkpoint)
    middle = _middle(model)
    set_precision_(model, dict.fromkeys(middle, bits))
    write_container(tmp_path / "v2.albsnn", model)
    write_container(tmp_path / "v1.albsnn", _as_float(model))
    v1, v2 = read_container(tmp_path / "v1.albsnn"), read_container(tmp_path / "v2.albsnn")
    assert (v1.version, v2.version) == (1, 2) and "precisions" not in v1.header
    modules = dict(model.named_modules())
    saving = 0
    for name in middle:
        weight = modules[name].weight
        saving += 4 * weight.numel() - codes_size(weight.numel(), bits) - 4 * weight.shape[0]
    assert sum(e.nbytes for e in v1.tensors.values()) - sum(e.nbytes for e in v2.tensors.values()) == saving
    data_saving = (v1.file_bytes - _data_start(tmp_path / "v1.albsnn")) - (
        v2.file_bytes - _data_start(tmp_path / "v2.albsnn")
    )
    assert abs(data_saving - saving) < 2 * ALIGNMENT * len(middle)  # only alignment padding differs
    assert v2.file_bytes < v1.file_bytes - 0.9 * saving


def test_k_bit_and_binarized_layers_mix(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    names = list(layer_bits(model))
    set_precision_(model, {names[1]: 4, names[2]: 2, names[3]: 8})
    binarize_(model, [names[4]])
    path = tmp_path / "mixed.albsnn"
    write_container(path, model)
    container = _assert_reads_back_exactly(path, model)
    assert container.version == 2 and binarized_layers(container.model) == [names[4]]
    assert container.header["precisions"] == {names[1]: 4, names[2]: 2, names[3]: 8}  # never a binarized layer
    kinds = [container.tensors[f"{name}.weight"].kind for name in names]
    assert kinds == ["float32", "int4", "int2", "int8", "binary"]


def test_a_model_without_k_bit_layers_is_still_version_1(digits_checkpoint: Path, tmp_path: Path) -> None:
    """The golden files prove the bytes unchanged; here a trained binarized model writes version 1 too."""
    model = load_checkpoint(digits_checkpoint)
    binarize_(model, _middle(model))
    path = tmp_path / "binary.albsnn"
    write_container(path, model)
    data = path.read_bytes()
    assert PREAMBLE.unpack_from(data)[1] == 1 and b'"precisions"' not in data and b'"int' not in data
    assert container_bytes(model) == data
    container = read_container(path)
    assert container.version == 1 and container_summary(container)["precisions"] == {}


def test_the_same_k_bit_model_gives_the_same_bytes(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    set_precision_(model, dict.fromkeys(_middle(model), 4))
    again = load_checkpoint(digits_checkpoint)
    set_precision_(again, dict.fromkeys(_middle(again), 4))
    assert container_bytes(model, metadata={"dataset": "digits"}) == container_bytes(
        again, metadata={"dataset": "digits"}
    )


def test_the_writer_refuses_a_nan_latent_weight_of_a_k_bit_layer(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    name = _middle(model)[0]
    set_precision_(model, {name: 4})
    with torch.no_grad():
        dict(model.named_modules())[name].parametrizations.weight.original.view(-1)[3] = float("nan")
    with pytest.raises(ContainerError, match=rf"tensor '{re.escape(name)}\.weight': values must be finite, found nan"):
        write_container(tmp_path / "m.albsnn", model)
    assert list(tmp_path.iterdir()) == []


# --- the golden version-2 file ------------------------------------------------------------------


def test_golden_version_2_content() -> None:
    container = read_container(GOLDEN / "kbit_mixed.albsnn")
    assert container.version == 2
    assert container.header["precisions"] == {"layers.conv1": 8, "layers.conv2": 4, "layers.conv3": 2}
    assert container.header["binarized"] == ["layers.linear1"]
    tensors = container.tensors
    table = [
        (n, tensors[f"layers.{n}.weight"].kind, tensors[f"layers.{n}.weight"].nbytes)
        for n in ("conv1", "conv2", "conv3")
    ]
    assert table == [("conv1", "int8", 27), ("conv2", "int4", 68), ("conv3", "int2", 79)]
    assert layer_bits(container.model) == {"layers.conv1": 8, "layers.conv2": 4, "layers.conv3": 2, "layers.linear1": 1}
    for name in ("conv1", "conv2", "conv3"):
        weight = getattr(container.model.layers, name).weight
        assert not weight[0].any() and weight[1:].flatten(1).abs().amax(dim=1).gt(0).all()  # channel 0: clip 0


def test_the_documented_preambles_are_the_golden_files() -> None:
    """docs/format.md shows the first bytes of a version-1 and a version-2 golden file: they are the files' bytes."""
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    dumps = re.findall(r"The golden file `(tests/golden/\w+\.albsnn)`.*?starts with\s*```\n([0-9a-f ]+)", text, re.S)
    assert sorted(path for path, _ in dumps) == ["tests/golden/fc_float32.albsnn", "tests/golden/kbit_mixed.albsnn"]
    for path, dump in dumps:
        shown = bytes.fromhex(dump)
        assert len(shown) == PREAMBLE.size + 2 and (ROOT / path).read_bytes().startswith(shown), path


# --- malformed version-2 files ------------------------------------------------------------------


def _repair_crc(entry: dict[str, Any], body: bytes) -> bytes:
    entry["crc32"] = crc32(body[entry["offset"] : entry["offset"] + entry["nbytes"]])
    return body


def _bits(entry: dict[str, Any]) -> int:
    return int(entry["kind"].removeprefix("int"))


def _set_code(name: str, index: int, code: int) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that writes ``code`` into element ``index`` of a k-bit tensor (any k-bit pattern) and repairs its CRC."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        bits = _bits(entry)
        at, shift = entry["offset"] + index * bits // 8, index * bits % 8
        field = ((1 << bits) - 1) << shift
        byte = (body[at] & ~field & 0xFF) | ((code << shift) & field)
        return _repair_crc(entry, body[:at] + bytes([byte]) + body[at + 1 :])

    return edit


def _set_last_byte_bits(name: str, mask: int) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that sets ``mask`` in the last byte of a tensor and repairs its CRC."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        at = entry["offset"] + entry["nbytes"] - 1
        return _repair_crc(entry, body[:at] + bytes([body[at] | mask]) + body[at + 1 :])

    return edit


def _lower_peak(name: str, channel: int) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that moves every ``±Q`` code of one channel to ``±(Q - 1)``: its largest |code| falls short of Q."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        bits, start, end = _bits(entry), entry["offset"], entry["offset"] + entry["nbytes"]
        top = (1 << (bits - 1)) - 1
        count = math.prod(entry["shape"])
        codes = torch.from_numpy(unpack_codes(body[start:end], count, bits).copy()).view(entry["shape"][0], -1)
        row = codes[channel]
        row[row.abs() == top] -= row[row.abs() == top].sign()
        return _repair_crc(entry, body[:start] + pack_codes(codes, bits) + body[end:])

    return edit


def _drop_tensor(name: str) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that removes a tensor (not the last) with its bytes and padding, moving the later ones up."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        index = next(i for i, t in enumerate(header["tensors"]) if t["name"] == name)
        removed = header["tensors"].pop(index)
        at, until = removed["offset"], header["tensors"][index]["offset"]
        for entry in header["tensors"][index:]:
            entry["offset"] -= until - at
        return body[:at] + body[until:]

    return edit


def _set_float32(name: str, index: int, value: float) -> Callable[[dict[str, Any], bytes], bytes]:
    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        at = entry["offset"] + 4 * index
        return _repair_crc(entry, body[:at] + struct.pack("<f", value) + body[at + 4 :])

    return edit


def _update(name: str, **fields: Any) -> Callable[[dict[str, Any], bytes], None]:
    return lambda header, body: _tensor(header, name).update(fields) and None


def _without_precisions(header: dict[str, Any], body: bytes) -> None:
    del header["precisions"]


class Case(enum.Enum):
    """One kind of malformed version-2 file; the value is the message the reader must give."""

    INT4_CODE_BELOW_RANGE = (
        r"tensor 'layers\.conv2\.weight': code -8 at element 30 is outside -7\.\.7 \(the narrow range of int4\)"
    )
    INT2_CODE_BELOW_RANGE = (
        r"tensor 'layers\.conv3\.weight': code -2 at element 50 is outside -1\.\.1 \(the narrow range of int2\)"
    )
    INT8_CODE_BELOW_RANGE = (
        r"tensor 'layers\.conv1\.weight': code -128 at element 10 is outside -127\.\.127 \(the narrow range of int8\)"
    )
    INT4_PADDING_BITS = r"tensor 'layers\.conv2\.weight': the 4 padding bits of the last byte must be zero"
    INT2_PADDING_BITS = r"tensor 'layers\.conv3\.weight': the 2 padding bits of the last byte must be zero"
    NEGATIVE_CLIP = (
        r"tensor 'layers\.conv2\.weight_clip': clips must be finite and >= 0 \(the weight of the largest code\), "
        r"found -0\.25"
    )
    NAN_CLIP = r"tensor 'layers\.conv3\.weight_clip': clips must be finite and >= 0 .*found nan"
    INF_CLIP = r"tensor 'layers\.conv1\.weight_clip': clips must be finite and >= 0 .*found inf"
    ZERO_CLIP_NONZERO_CODE = (
        r"tensor 'layers\.conv2\.weight': channel 1 has clip 0 but a nonzero code \(clip 0 means all its weights "
        r"are 0\)"
    )
    NONZERO_CODE_IN_A_ZERO_CHANNEL = r"tensor 'layers\.conv3\.weight': channel 0 has clip 0 but a nonzero code"
    CLIP_OF_A_ZERO_CHANNEL = r"tensor 'layers\.conv2\.weight': the largest \|code\| of channel 0 is 0, expected 7"
    PEAK_BELOW_Q = (
        r"tensor 'layers\.conv1\.weight': the largest \|code\| of channel 1 is 126, expected 127 \(a channel whose "
        r"clip is > 0 reaches \+-127, or reading would not reproduce its scale\)"
    )
    PEAK_BELOW_Q_INT4 = r"tensor 'layers\.conv2\.weight': the largest \|code\| of channel 2 is 6, expected 7"
    PRECISIONS_BINARIZED_LAYER = (
        r"field 'precisions': 'layers\.linear1' is also listed in 'binarized' \(a layer has one precision\)"
    )
    PRECISIONS_BN_LAYER = (
        r"field 'precisions': 'layers\.bn1' is not a conv or linear layer of the architecture \(layers\.conv1, "
    )
    PRECISIONS_UNKNOWN_LAYER = r"field 'precisions': 'layers\.conv9' is not a conv or linear layer"
    PRECISIONS_3_BITS = r"field 'precisions': 'layers\.conv2' has 3 bits, expected 2, 4 or 8 \(1 bit is 'binarized'\)"
    PRECISIONS_1_BIT = r"field 'precisions': 'layers\.conv2' has 1 bits, expected 2, 4 or 8"
    PRECISIONS_BOOL_BITS = r"field 'precisions': 'layers\.conv2' has True bits"
    PRECISIONS_STRING_BITS = r"field 'precisions': 'layers\.conv2' has '4' bits"
    PRECISIONS_EMPTY = (
        r"field 'precisions': expected an object of 1 to 65536 layer names to bits \(a file without k-bit"
    )
    PRECISIONS_NOT_OBJECT = r"field 'precisions': expected an object of 1 to 65536 layer names to bits"
    PRECISIONS_BAD_NAME = r"field 'precisions': expected a non-empty string"
    PRECISIONS_IN_VERSION_1 = (
        r"field 'precisions': not allowed in a version-1 file \(k-bit layers make a version-2 file\)"
    )
    VERSION_2_FILE_LABELLED_1 = r"field 'precisions': not allowed in a version-1 file"
    PRECISIONS_MISSING = r"header: missing field 'precisions'"
    KIND_NOT_ITS_BITS = (
        r"tensor 'layers\.conv2\.weight': kind 'int4', expected int2 \(its layer has 2 bits in 'precisions'\)"
    )
    INT_KIND_OF_A_FLOAT_LAYER = (
        r"tensor 'layers\.conv1\.weight': kind 'int8', expected float32 or float16 \(its layer is not in 'precisions'\)"
    )
    BINARY_KIND_OF_A_K_BIT_LAYER = (
        r"tensor 'layers\.conv1\.weight': kind 'binary', expected int8 \(its layer has 8 bits in 'precisions'\)"
    )
    UNKNOWN_KIND = (
        r"tensor 'layers\.conv2\.weight': unknown kind 'int3' \(the kinds of format version 2: binary, float32, "
        r"float16, int2, int4, int8\)"
    )
    WRONG_NBYTES = r"tensor 'layers\.conv3\.weight': nbytes is 78, a int2 tensor of shape \[7, 5, 3, 3\] needs 79"
    MISSING_CLIP = r"tensor 'layers\.conv2\.weight_clip': required by the architecture but missing"
    CLIP_SHAPE = (
        r"tensor 'layers\.conv2\.weight_clip': shape \[4\], expected \[5\] \(one clip per output channel of "
        r"'layers\.conv2\.weight'\)"
    )
    CLIP_FLOAT16 = r"tensor 'layers\.conv2\.weight_clip': kind 'float16', expected float32 \(clips are float32\)"
    FLIPPED_CODE = r"tensor 'layers\.conv2\.weight': crc32 mismatch"


BUILDERS: dict[Case, Callable[[], bytes]] = {
    Case.INT4_CODE_BELOW_RANGE: lambda: _edit(_set_code("layers.conv2.weight", 30, -8), V2),
    Case.INT2_CODE_BELOW_RANGE: lambda: _edit(_set_code("layers.conv3.weight", 50, -2), V2),
    Case.INT8_CODE_BELOW_RANGE: lambda: _edit(_set_code("layers.conv1.weight", 10, -128), V2),
    Case.INT4_PADDING_BITS: lambda: _edit(_set_last_byte_bits("layers.conv2.weight", 0x80), V2),
    Case.INT2_PADDING_BITS: lambda: _edit(_set_last_byte_bits("layers.conv3.weight", 0x40), V2),
    Case.NEGATIVE_CLIP: lambda: _edit(_set_float32("layers.conv2.weight_clip", 3, -0.25), V2),
    Case.NAN_CLIP: lambda: _edit(_set_float32("layers.conv3.weight_clip", 2, float("nan")), V2),
    Case.INF_CLIP: lambda: _edit(_set_float32("layers.conv1.weight_clip", 1, float("inf")), V2),
    Case.ZERO_CLIP_NONZERO_CODE: lambda: _edit(_set_float32("layers.conv2.weight_clip", 1, 0.0), V2),
    Case.NONZERO_CODE_IN_A_ZERO_CHANNEL: lambda: _edit(_set_code("layers.conv3.weight", 7, 1), V2),
    Case.CLIP_OF_A_ZERO_CHANNEL: lambda: _edit(_set_float32("layers.conv2.weight_clip", 0, 0.3), V2),
    Case.PEAK_BELOW_Q: lambda: _edit(_lower_peak("layers.conv1.weight", 1), V2),
    Case.PEAK_BELOW_Q_INT4: lambda: _edit(_lower_peak("layers.conv2.weight", 2), V2),
    Case.PRECISIONS_BINARIZED_LAYER: lambda: _edit(_set("precisions/layers.linear1", 4), V2),
    Case.PRECISIONS_BN_LAYER: lambda: _edit(_set("precisions/layers.bn1", 4), V2),
    Case.PRECISIONS_UNKNOWN_LAYER: lambda: _edit(_set("precisions/layers.conv9", 8), V2),
    Case.PRECISIONS_3_BITS: lambda: _edit(_set("precisions/layers.conv2", 3), V2),
    Case.PRECISIONS_1_BIT: lambda: _edit(_set("precisions/layers.conv2", 1), V2),
    Case.PRECISIONS_BOOL_BITS: lambda: _edit(_set("precisions/layers.conv2", True), V2),
    Case.PRECISIONS_STRING_BITS: lambda: _edit(_set("precisions/layers.conv2", "4"), V2),
    Case.PRECISIONS_EMPTY: lambda: _edit(_set("precisions", {}), V2),
    Case.PRECISIONS_NOT_OBJECT: lambda: _edit(_set("precisions", [["layers.conv2", 4]]), V2),
    Case.PRECISIONS_BAD_NAME: lambda: _edit(_set("precisions/", 4), V2),
    Case.PRECISIONS_IN_VERSION_1: lambda: _edit(_set("precisions", {"layers.conv4": 8})),
    Case.VERSION_2_FILE_LABELLED_1: lambda: V2[:8] + struct.pack("<I", 1) + V2[12:],
    Case.PRECISIONS_MISSING: lambda: _edit(_without_precisions, V2),
    Case.KIND_NOT_ITS_BITS: lambda: _edit(_set("precisions/layers.conv2", 2), V2),
    Case.INT_KIND_OF_A_FLOAT_LAYER: lambda: _edit(lambda h, b: h["precisions"].pop("layers.conv1") and None, V2),
    Case.BINARY_KIND_OF_A_K_BIT_LAYER: lambda: _edit(_update("layers.conv1.weight", kind="binary", nbytes=4), V2),
    Case.UNKNOWN_KIND: lambda: _edit(_update("layers.conv2.weight", kind="int3"), V2),
    Case.WRONG_NBYTES: lambda: _edit(_update("layers.conv3.weight", nbytes=78), V2),
    Case.MISSING_CLIP: lambda: _edit(_drop_tensor("layers.conv2.weight_clip"), V2),
    Case.CLIP_SHAPE: lambda: _edit(_update("layers.conv2.weight_clip", shape=[4], nbytes=16), V2),
    Case.CLIP_FLOAT16: lambda: _edit(_update("layers.conv2.weight_clip", kind="float16", nbytes=10), V2),
    Case.FLIPPED_CODE: lambda: _edit(lambda h, b: b[:400] + bytes([b[400] ^ 0x01]) + b[401:], V2),
}


def test_every_case_has_a_builder() -> None:
    assert set(BUILDERS) == set(Case)


def test_the_golden_file_and_an_unchanged_rebuild_are_valid(tmp_path: Path) -> None:
    for data in (V2, _edit(lambda h, b: None, V2)):
        path = tmp_path / "ok.albsnn"
        path.write_bytes(data)
        assert read_container(path).version == 2


@pytest.mark.parametrize("case", list(Case), ids=lambda case: case.name.lower())
def test_malformed_version_2_file_is_rejected(tmp_path: Path, case: Case) -> None:
    path = tmp_path / "bad.albsnn"
    path.write_bytes(BUILDERS[case]())
    start = time.perf_counter()
    with pytest.raises(ContainerError, match=case.value) as info:
        read_container(path)
    assert time.perf_counter() - start < 5.0, "rejection must be fast"
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def _read_bytes(folder: Path, data: bytes) -> None:
    path = folder / "fuzz.albsnn"
    path.write_bytes(data)
    try:
        read_container(path)
    except ContainerError as exc:
        assert "\n" not in str(exc), "one line"


_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(V2) - 1), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, len(V2))),
)
def test_random_flips_and_truncations_of_a_version_2_file(
    tmp_path: Path, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(V2)
    for position, mask in flips:
        data[position] ^= mask
    _read_bytes(tmp_path, bytes(data[:cut] if cut is not None else data))


@_FUZZ
@given(position=st.integers(0, 1023), value=st.integers(0, 255))
def test_random_code_bytes_with_a_repaired_crc(tmp_path: Path, position: int, value: int) -> None:
    """Any byte of the k-bit tensors, CRC repaired: read (and then exactly) or refused in one line, nothing else."""
    header, body = _split(V2)
    codes = [t for t in header["tensors"] if t["kind"].startswith("int")]
    entry = codes[position % len(codes)]
    at = entry["offset"] + position // len(codes) % entry["nbytes"]
    edited = body[:at] + bytes([value]) + body[at + 1 :]

    def edit(h: dict[str, Any], b: bytes) -> bytes:
        return _repair_crc(_tensor(h, entry["name"]), edited)

    _read_bytes(tmp_path, _edit(edit, V2))
