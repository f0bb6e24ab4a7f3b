"""Hostile and damaged ``.albsnn`` files: each must raise ContainerError naming the problem, quickly.

The handcrafted cases come from one enum (llama.cpp's way of testing GGUF); a
hypothesis property test then flips and truncates bytes of a valid file, with
and without repairing the header CRC: every outcome is a ContainerError or a
successful read, never another exception.
"""

from __future__ import annotations

import copy
import enum
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albsnn_compress.errors import ContainerError
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.formats.container.header import ALIGNMENT, MAGIC, PREAMBLE, crc32, encode_header

GOLDEN = Path(__file__).resolve().parent / "golden"
BASE = (GOLDEN / "conv_mixed.albsnn").read_bytes()  # binary conv2/conv3, float32 elsewhere, all header fields set
SMALL = (GOLDEN / "fc_float16.albsnn").read_bytes()  # binary conv1 with 36 weights: 4 padding bits


def _split(data: bytes = BASE) -> tuple[dict[str, Any], bytes]:
    header_len = PREAMBLE.unpack_from(data)[3]
    return json.loads(data[PREAMBLE.size : PREAMBLE.size + header_len]), data[PREAMBLE.size + header_len :]


def _pad(raw: bytes) -> bytes:
    return raw + b" " * ((-(PREAMBLE.size + len(raw))) % ALIGNMENT)


def _file(
    header: dict[str, Any] | bytes,
    body: bytes,
    *,
    magic: bytes = MAGIC,
    version: int = 1,
    header_len: int | None = None,
) -> bytes:
    """Assemble a file with a correct header CRC, so the case reaches the check it targets."""
    raw = encode_header(header) if isinstance(header, dict) else _pad(header)
    length = len(raw) if header_len is None else header_len
    return PREAMBLE.pack(magic, version, crc32(raw), length) + raw + body


def _raw_header(data: bytes = BASE) -> bytes:
    return data[PREAMBLE.size : PREAMBLE.size + PREAMBLE.unpack_from(data)[3]].rstrip(b" ")


def _edit(edit: Callable[[dict[str, Any], bytes], bytes | None], data: bytes = BASE) -> bytes:
    """Apply ``edit`` to a copy of the header (it may return a new data section) and reassemble, same version."""
    header, body = _split(data)
    header = copy.deepcopy(header)
    new_body = edit(header, body)
    return _file(header, body if new_body is None else new_body, version=PREAMBLE.unpack_from(data)[1])


def _tensor(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in header["tensors"] if t["name"] == name)


def _text_replace(old: bytes, new: bytes) -> bytes:
    raw = _raw_header()
    assert old in raw
    return _file(raw.replace(old, new, 1), _split()[1])


def _set(path: str, value: Any) -> Callable[[dict[str, Any], bytes], None]:
    """An edit that sets ``header[a][b]...`` (keys split on '/', digits index lists)."""

    def edit(header: dict[str, Any], body: bytes) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split("/")]
        target: Any = header
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


def _delete(key: str) -> Callable[[dict[str, Any], bytes], None]:
    return lambda header, body: header.pop(key) and None


def _shift_from(index: int, by: int) -> Callable[[dict[str, Any], bytes], bytes]:
    """Insert ``by`` zero bytes before tensor ``index`` and move its offset and all later ones."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        at = header["tensors"][index]["offset"]
        for entry in header["tensors"][index:]:
            entry["offset"] += by
        return body[:at] + b"\0" * by + body[at:]

    return edit


def _scale_shape(header: dict[str, Any], body: bytes) -> None:
    entry = _tensor(header, "layers.conv2.weight_scale")
    entry["shape"], entry["nbytes"] = [31], 124  # still ends before the next aligned offset
    entry["crc32"] = crc32(body[entry["offset"] : entry["offset"] + 124])


def _drop_last_tensor(header: dict[str, Any], body: bytes) -> bytes:
    header["tensors"].pop()
    last = header["tensors"][-1]
    return body[: last["offset"] + last["nbytes"]]


def _last_tensor_past_end(header: dict[str, Any], body: bytes) -> None:
    entry = header["tensors"][-1]
    entry["shape"], entry["nbytes"] = [1000], 4000


def _nonzero_padding_bits(header: dict[str, Any], body: bytes) -> bytes:
    entry = _tensor(header, "layers.conv1.weight")  # 36 bits in 5 bytes
    end = entry["offset"] + entry["nbytes"]
    body = body[: end - 1] + bytes([body[end - 1] | 0x01]) + body[end:]
    entry["crc32"] = crc32(body[entry["offset"] : end])
    return body


def _nonzero_alignment_padding(header: dict[str, Any], body: bytes) -> bytes:
    entry = _tensor(header, "layers.bn4.weight")  # 40 bytes, then 24 bytes of alignment padding
    end = entry["offset"] + entry["nbytes"]
    return body[:end] + b"\x01" + body[end + 1 :]


def _set_float32(name: str, index: int, value: float) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that overwrites element ``index`` of a float32 tensor and repairs its CRC."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        at = entry["offset"] + 4 * index
        body = body[:at] + struct.pack("<f", value) + body[at + 4 :]
        entry["crc32"] = crc32(body[entry["offset"] : entry["offset"] + entry["nbytes"]])
        return body

    return edit


def _set_float16(name: str, index: int, value: float) -> Callable[[dict[str, Any], bytes], bytes]:
    """An edit that overwrites element ``index`` of a float16 tensor and repairs its CRC."""

    def edit(header: dict[str, Any], body: bytes) -> bytes:
        entry = _tensor(header, name)
        at = entry["offset"] + 2 * index
        body = body[:at] + struct.pack("<e", value) + body[at + 2 :]
        entry["crc32"] = crc32(body[entry["offset"] : entry["offset"] + entry["nbytes"]])
        return body

    return edit


def _huge_forward(header: dict[str, Any], body: bytes) -> None:
    """Bigger images (the GAP head keeps every tensor shape) at the most time steps: 43 GB per image."""
    header["spec"]["input"]["shape"] = [1, 128, 128]
    header["timesteps"] = 4096


def _flat_header() -> bytes:
    """A 16 MiB header (the cap) of tiny arrays: its JSON once took 6-24 s and 0.7-1.1 GB to parse."""
    room = (16 << 20) - PREAMBLE.size - 16
    return _file(b'{"a":[' + b"[]," * (room // 3) + b"[]]}", b"")


def _nested_header() -> bytes:
    """16 MiB of arrays 29 deep, repeated (within the depth cap): 8 million lists, 9 s and 800 MB to build."""
    unit = b"[" * 29 + b"0" + b"]" * 29 + b","
    return _file(b'{"a":[' + unit * 279_550 + b"0]}", b"")


def _header_at_the_container_cap() -> bytes:
    """Exactly 2^18 objects and arrays (the top object, one list and 262142 empty ones) is still parsed."""
    return _file(b'{"a":[' + b"[]," * 262_141 + b"[]]}", b"")


def _flip_data(header: dict[str, Any], body: bytes) -> bytes:
    return bytes([body[0] ^ 0x10]) + body[1:]


class Case(enum.Enum):
    """One kind of malformed file; the value is the message the reader must give."""

    EMPTY = r"preamble: file is truncated \(0 bytes"
    TRUNCATED_IN_MAGIC = r"preamble: file is truncated \(5 bytes"
    TRUNCATED_IN_VERSION = r"preamble: file is truncated \(10 bytes"
    TRUNCATED_IN_HEADER_LEN = r"preamble: file is truncated \(20 bytes"
    TRUNCATED_IN_HEADER = r"header_len: \d+ bytes but only 100 follow the preamble"
    TRUNCATED_AT_DATA_START = r"past the end of the 0-byte data section"
    TRUNCATED_IN_DATA = r"past the end of the \d+-byte data section \(truncated file\?\)"
    BAD_MAGIC = r"magic: not an \.albsnn file \(starts with b'GGUF"
    SHORT_BAD_MAGIC = r"magic: not an \.albsnn file"
    MAGIC_CRLF = (
        r"magic: the file starts like an \.albsnn container whose magic is damaged \(.*final newline became CR LF"
    )
    MAGIC_7BIT = r"magic: .* whose magic is damaged \(09 41 4c .*lost the eighth bit.*copy it again in binary mode$"
    ZIP_NOT_CONTAINER = (
        r"magic: not an \.albsnn file \(starts with b'PK\\x03\\x04.*; it is a zip archive \(a model\.pt checkpoint\?"
    )
    TEXT_NOT_CONTAINER = r"magic: not an \.albsnn file \(starts with b'# notes:.*; it is a text file$"
    FUTURE_VERSION = r"version: format version 3 is not supported \(this reader supports \[1, 2\]\)"
    VERSION_ZERO = r"version: format version 0 is not supported"
    HUGE_HEADER_LEN = r"header_len: 1099511627776 bytes exceeds the 16777216-byte cap"
    MAX_HEADER_LEN = r"header_len: 18446744073709551615 bytes exceeds"
    UNALIGNED_HEADER_LEN = r"header_len: \d+ leaves the data section unaligned"
    HEADER_CRC = r"header: crc32 mismatch"
    NOT_UTF8 = r"header: not valid UTF-8"
    NOT_JSON = r"header JSON: not valid JSON"
    NOT_AN_OBJECT = r"header JSON: top level is list, expected an object"
    JUNK_AFTER_JSON = r"header JSON: junk after the JSON object"
    DUPLICATE_KEY = r"header JSON: duplicate key 'budget'"
    NAN_LITERAL = r"header JSON: NaN is not allowed"
    INFINITY_LITERAL = r"header JSON: -Infinity is not allowed"
    FLOAT_OVERFLOW = r"header JSON: number 1e999 overflows to inf"
    HUGE_INTEGER = r"header JSON: integer with 5000 digits"
    DEEP_NESTING = r"header JSON: nesting deeper than 32 levels"
    HUGE_FLAT_HEADER = r"header JSON: \d+ or more objects and arrays, at most 262144 allowed"
    NESTED_REPEATED = r"header JSON: \d+ or more objects and arrays, at most 262144 allowed"
    CONTAINERS_AT_THE_CAP = r"header: missing field 'accuracy'"
    MODERATE_NESTING = r"header JSON: nesting deeper than 32 levels"
    UNPAIRED_SURROGATE = r"header JSON: string 'x\\ud800' holds an unpaired surrogate escape"
    MISSING_FIELD = r"header: missing field 'budget'"
    UNKNOWN_FIELD = r"header: unknown field 'extra'"
    TIMESTEPS_STRING = r"field 'timesteps': expected an integer in \[1, 4096\], got '2'"
    TIMESTEPS_BOOL = r"field 'timesteps': expected an integer in \[1, 4096\], got True"
    TIMESTEPS_ZERO = r"field 'timesteps': expected an integer in \[1, 4096\], got 0"
    SPEC_NOT_OBJECT = r"field 'spec': expected an object, got list"
    METADATA_NOT_STRINGS = r"field 'metadata': value of 'dataset' must be a string, got int"
    METADATA_TOO_MANY = r"field 'metadata': 300 entries, at most 256 allowed"
    ACCURACY_NOT_NUMBER = r"field 'accuracy': value of 'test_after' must be a finite number"
    BAD_SHA256 = r"field 'source_sha256': expected 64 lowercase hex digits or null"
    TENSORS_NOT_LIST = r"field 'tensors': expected a list of 1 to 65536 entries"
    TENSOR_MISSING_KEY = r"tensors\[0\]: missing field 'crc32'"
    TENSOR_UNKNOWN_KEY = r"tensors\[0\]: unknown field 'dtype'"
    EMPTY_NAME = r"field 'tensors\[0\]\.name': expected a non-empty string"
    NUL_IN_NAME = r"name 'layers\.conv1\\x00\.weight' contains a NUL character"
    LONG_NAME = r"300 characters, more than 256"  # the readers' shared name limit
    DUPLICATE_NAME = r"tensor 'layers\.conv1\.weight': duplicate tensor name"
    UNKNOWN_KIND = (  # a version-2 kind in a version-1 file
        r"tensor 'layers\.conv1\.weight': unknown kind 'int4' \(the kinds of format version 1: binary, float32, "
        r"float16\)"
    )
    BOOL_DIM = r"shape\[0\] must be an integer >= 0, got True \(bool\)"
    FLOAT_DIM = r"shape\[0\] must be an integer >= 0, got 16\.0 \(float\)"
    NEGATIVE_DIM = r"shape\[0\] must be an integer >= 0, got -16 \(int\)"
    RANK_TOO_HIGH = r"shape must be a list of at most 8 dimensions"
    OVERFLOWING_SHAPE = r"shape \[1099511627776, 1099511627776, 3, 3\] holds more than 268435456 elements"
    WRONG_NBYTES = r"tensor 'layers\.conv1\.weight': nbytes is 577, a float32 tensor of shape \[16, 1, 3, 3\] needs 576"
    CRC_TOO_BIG = r"crc32 4294967296 does not fit in 32 bits"
    MISALIGNED_OFFSET = r"tensor 'layers\.bn1\.weight': offset 584 is not a multiple of 64"
    OVERLAPPING_OFFSETS = r"tensor 'layers\.bn1\.weight': offset 0 overlaps tensor 'layers\.conv1\.weight'"
    GAP_BETWEEN_TENSORS = r"tensor 'layers\.bn1\.bias': gap of 64 bytes"
    OFFSET_PAST_END = r"tensor 'layers\.bn4\.running_var': ends at \d+, past the end"
    TRAILING_BYTES = r"data section: 16 trailing bytes after the last tensor 'layers\.bn4\.running_var'"
    POLYGLOT_ZIP = r"data section: 22 trailing bytes"
    BAD_TENSOR_CRC = r"tensor 'layers\.conv1\.weight': crc32 mismatch"
    FLIPPED_DATA_BYTE = r"tensor 'layers\.conv1\.weight': crc32 mismatch"
    NONZERO_PADDING_BITS = r"tensor 'layers\.conv1\.weight': the 4 padding bits of the last byte must be zero"
    NONZERO_ALIGNMENT_PADDING = r"data section: padding after tensor 'layers\.bn4\.weight' must be zero bytes"
    SCALE_SHAPE_MISMATCH = (
        r"weight_scale': shape \[31\], expected \[32\] \(one scale per output channel of 'layers\.conv2\.weight'\)"
    )
    NEGATIVE_SCALE = (
        r"tensor 'layers\.conv2\.weight_scale': scales must be finite and >= 0 \(mean \|W\|\), found -0\.25"
    )
    NAN_SCALE = r"tensor 'layers\.conv3\.weight_scale': scales must be finite and >= 0 \(mean \|W\|\), found nan"
    INF_SCALE = r"tensor 'layers\.conv2\.weight_scale': scales must be finite and >= 0 \(mean \|W\|\), found inf"
    NAN_WEIGHT = (
        r"tensor 'layers\.conv1\.weight': values must be finite, found nan; the model it was written from is broken"
    )
    INF_BN_MEAN = r"tensor 'layers\.bn2\.running_mean': values must be finite, found -inf"
    NEGATIVE_VARIANCE = r"tensor 'layers\.bn1\.running_var': a batch-norm variance must be finite and >= 0, found -1\.0"
    INF_FLOAT16 = r"tensor 'layers\.linear2\.weight': values must be finite, found inf"
    UNEXPECTED_TENSOR = r"tensor 'layers\.conv1\.weightx': not part of the architecture"
    MISSING_TENSOR = r"tensor 'layers\.bn4\.running_var': required by the architecture but missing"
    KIND_NOT_BINARY = (
        r"tensor 'layers\.conv4\.weight': kind 'float32', expected binary \(its layer is listed in 'binarized'\)"
    )
    BINARY_NOT_LISTED = (
        r"tensor 'layers\.conv2\.weight': kind 'binary', expected float32 or float16 "
        r"\(its layer is not in 'binarized'\)"
    )
    BINARIZED_NOT_A_LAYER = r"field 'binarized': 'layers\.bn1' is not a binarizable layer"
    SPEC_INVALID = r"field 'spec': layer 0: unknown layer type 'attention'"
    SPEC_NAN_THRESHOLD = r"field 'spec': spec neuron v_threshold must be a finite number, got 'nan'"
    SPEC_BOOL_CHANNELS = r"field 'spec': layer conv1 out_channels must be an integer >= 1, got True"
    SPEC_STRING_STD = r"field 'spec': spec input std\[0\] must be a finite number > 0, got 'inf'"
    SPEC_HUGE_FORWARD = (
        r"field 'timesteps': a forward pass of one image at T=4096 needs \d+\.\d GiB of activations \(at most 1\.0 "
        r"GiB\); "
        r"use fewer time steps or smaller layers"
    )
    SPEC_HUGE_ACTIVATION = r"field 'spec': a layer outputs \d+ elements per sample \(at most 4194304\)"
    SPEC_HUGE_INPUT = r"field 'spec': spec input: shape \[1, 100000, 100000\] holds more than 268435456 elements"
    SPEC_TOO_MANY_PARAMETERS = (
        r"field 'spec': the architecture has \d+ parameters, more than a \d+-byte data section can hold"
    )
    CLASS_NAMES_COUNT = r"field 'class_names': 3 names for 10 classes"


_HEADER_LEN = PREAMBLE.unpack_from(BASE)[3]
_PREAMBLE_REST = BASE[8 : PREAMBLE.size]
_DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_MODERATE = b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"
_ZIP_TAIL = b"PK\x05\x06" + b"\0" * 18  # an empty zip's end-of-central-directory record

BUILDERS: dict[Case, Callable[[], bytes]] = {
    Case.EMPTY: lambda: b"",
    Case.TRUNCATED_IN_MAGIC: lambda: BASE[:5],
    Case.TRUNCATED_IN_VERSION: lambda: BASE[:10],
    Case.TRUNCATED_IN_HEADER_LEN: lambda: BASE[:20],
    Case.TRUNCATED_IN_HEADER: lambda: BASE[: PREAMBLE.size + 100],
    Case.TRUNCATED_AT_DATA_START: lambda: BASE[: PREAMBLE.size + _HEADER_LEN],
    Case.TRUNCATED_IN_DATA: lambda: BASE[:-100],
    Case.BAD_MAGIC: lambda: b"GGUF\x03\x00\x00\x00" + BASE[8:],
    Case.SHORT_BAD_MAGIC: lambda: b"PK\x03\x04",
    Case.MAGIC_CRLF: lambda: BASE[:7] + b"\r\n" + BASE[8:],
    Case.MAGIC_7BIT: lambda: b"\x09" + BASE[1:],
    Case.ZIP_NOT_CONTAINER: lambda: b"PK\x03\x04" + bytes(60),
    Case.TEXT_NOT_CONTAINER: lambda: b"# notes: the model of 1 December\nbudget 0.5\n",
    Case.FUTURE_VERSION: lambda: BASE[:8] + struct.pack("<I", 3) + BASE[12:],
    Case.VERSION_ZERO: lambda: BASE[:8] + struct.pack("<I", 0) + BASE[12:],
    Case.HUGE_HEADER_LEN: lambda: BASE[:16] + struct.pack("<Q", 1 << 40) + BASE[24:],
    Case.MAX_HEADER_LEN: lambda: BASE[:16] + struct.pack("<Q", 2**64 - 1) + BASE[24:],
    Case.UNALIGNED_HEADER_LEN: lambda: BASE[:16] + struct.pack("<Q", _HEADER_LEN - 1) + BASE[24:],
    Case.HEADER_CRC: lambda: BASE[:30] + bytes([BASE[30] ^ 0x01]) + BASE[31:],
    Case.NOT_UTF8: lambda: _file(b'{"a":"\xff\xfe"}', _split()[1]),
    Case.NOT_JSON: lambda: _file(b"{not json}", _split()[1]),
    Case.NOT_AN_OBJECT: lambda: _file(b"[1, 2, 3]", _split()[1]),
    Case.JUNK_AFTER_JSON: lambda: _file(_raw_header() + b"xyz", _split()[1]),
    Case.DUPLICATE_KEY: lambda: _text_replace(b'"budget":0.5', b'"budget":0.5,"budget":0.5'),
    Case.NAN_LITERAL: lambda: _text_replace(b'"budget":0.5', b'"budget":NaN'),
    Case.INFINITY_LITERAL: lambda: _text_replace(b'"budget":0.5', b'"budget":-Infinity'),
    Case.FLOAT_OVERFLOW: lambda: _text_replace(b'"budget":0.5', b'"budget":1e999'),
    Case.HUGE_INTEGER: lambda: _text_replace(b'"timesteps":2', b'"timesteps":' + b"9" * 5000),
    Case.DEEP_NESTING: lambda: _file(_DEEP, _split()[1]),
    Case.HUGE_FLAT_HEADER: _flat_header,
    Case.NESTED_REPEATED: _nested_header,
    Case.CONTAINERS_AT_THE_CAP: _header_at_the_container_cap,
    Case.MODERATE_NESTING: lambda: _file(_MODERATE, _split()[1]),
    Case.UNPAIRED_SURROGATE: lambda: _text_replace(b'"dataset":"digits"', b'"dataset":"x\\ud800"'),
    Case.MISSING_FIELD: lambda: _edit(_delete("budget")),
    Case.UNKNOWN_FIELD: lambda: _edit(_set("extra", 1)),
    Case.TIMESTEPS_STRING: lambda: _edit(_set("timesteps", "2")),
    Case.TIMESTEPS_BOOL: lambda: _edit(_set("timesteps", True)),
    Case.TIMESTEPS_ZERO: lambda: _edit(_set("timesteps", 0)),
    Case.SPEC_NOT_OBJECT: lambda: _edit(_set("spec", [])),
    Case.METADATA_NOT_STRINGS: lambda: _edit(_set("metadata/dataset", 7)),
    Case.METADATA_TOO_MANY: lambda: _edit(_set("metadata", {f"k{i}": "v" for i in range(300)})),
    Case.ACCURACY_NOT_NUMBER: lambda: _edit(_set("accuracy/test_after", "96.5")),
    Case.BAD_SHA256: lambda: _edit(_set("source_sha256", "ABC" * 21 + "D")),
    Case.TENSORS_NOT_LIST: lambda: _edit(_set("tensors", {})),
    Case.TENSOR_MISSING_KEY: lambda: _edit(lambda h, b: h["tensors"][0].pop("crc32") and None),
    Case.TENSOR_UNKNOWN_KEY: lambda: _edit(_set("tensors/0/dtype", "f4")),
    Case.EMPTY_NAME: lambda: _edit(_set("tensors/0/name", "")),
    Case.NUL_IN_NAME: lambda: _edit(_set("tensors/0/name", "layers.conv1\x00.weight")),
    Case.LONG_NAME: lambda: _edit(_set("tensors/0/name", "x" * 300)),
    Case.DUPLICATE_NAME: lambda: _edit(_set("tensors/1/name", "layers.conv1.weight")),
    Case.UNKNOWN_KIND: lambda: _edit(_set("tensors/0/kind", "int4")),
    Case.BOOL_DIM: lambda: _edit(_set("tensors/0/shape/0", True)),
    Case.FLOAT_DIM: lambda: _edit(_set("tensors/0/shape/0", 16.0)),
    Case.NEGATIVE_DIM: lambda: _edit(_set("tensors/0/shape/0", -16)),
    Case.RANK_TOO_HIGH: lambda: _edit(_set("tensors/0/shape", [1] * 9)),
    Case.OVERFLOWING_SHAPE: lambda: _edit(
        lambda h, b: _tensor(h, "layers.conv2.weight").update(shape=[2**40, 2**40, 3, 3])
    ),
    Case.WRONG_NBYTES: lambda: _edit(_set("tensors/0/nbytes", 577)),
    Case.CRC_TOO_BIG: lambda: _edit(_set("tensors/0/crc32", 2**32)),
    Case.MISALIGNED_OFFSET: lambda: _edit(_set("tensors/1/offset", 584)),
    Case.OVERLAPPING_OFFSETS: lambda: _edit(_set("tensors/1/offset", 0)),
    Case.GAP_BETWEEN_TENSORS: lambda: _edit(_shift_from(2, 64)),
    Case.OFFSET_PAST_END: lambda: _edit(_last_tensor_past_end),
    Case.TRAILING_BYTES: lambda: BASE + b"\0" * 16,
    Case.POLYGLOT_ZIP: lambda: BASE + _ZIP_TAIL,
    Case.BAD_TENSOR_CRC: lambda: _edit(lambda h, b: h["tensors"][0].update(crc32=h["tensors"][0]["crc32"] ^ 1)),
    Case.FLIPPED_DATA_BYTE: lambda: _edit(_flip_data),
    Case.NONZERO_PADDING_BITS: lambda: _edit(_nonzero_padding_bits, SMALL),
    Case.NONZERO_ALIGNMENT_PADDING: lambda: _edit(_nonzero_alignment_padding),
    Case.SCALE_SHAPE_MISMATCH: lambda: _edit(_scale_shape),
    Case.NEGATIVE_SCALE: lambda: _edit(_set_float32("layers.conv2.weight_scale", 5, -0.25)),
    Case.NAN_SCALE: lambda: _edit(_set_float32("layers.conv3.weight_scale", 0, float("nan"))),
    Case.INF_SCALE: lambda: _edit(_set_float32("layers.conv2.weight_scale", 3, float("inf"))),
    Case.NAN_WEIGHT: lambda: _edit(_set_float32("layers.conv1.weight", 7, float("nan"))),
    Case.INF_BN_MEAN: lambda: _edit(_set_float32("layers.bn2.running_mean", 0, float("-inf"))),
    Case.NEGATIVE_VARIANCE: lambda: _edit(_set_float32("layers.bn1.running_var", 2, -1.0)),
    Case.INF_FLOAT16: lambda: _edit(_set_float16("layers.linear2.weight", 5, float("inf")), SMALL),
    Case.UNEXPECTED_TENSOR: lambda: _edit(_set("tensors/0/name", "layers.conv1.weightx")),
    Case.MISSING_TENSOR: lambda: _edit(_drop_last_tensor),
    Case.KIND_NOT_BINARY: lambda: _edit(lambda h, b: h["binarized"].append("layers.conv4")),
    Case.BINARY_NOT_LISTED: lambda: _edit(_set("binarized", ["layers.conv3"])),
    Case.BINARIZED_NOT_A_LAYER: lambda: _edit(_set("binarized", ["layers.bn1"])),
    Case.SPEC_INVALID: lambda: _edit(_set("spec/layers/0/type", "attention")),
    Case.SPEC_NAN_THRESHOLD: lambda: _edit(_set("spec/neuron/v_threshold", "nan")),
    Case.SPEC_BOOL_CHANNELS: lambda: _edit(_set("spec/layers/0/out_channels", True)),
    Case.SPEC_STRING_STD: lambda: _edit(_set("spec/input/std", ["inf"])),
    Case.SPEC_HUGE_FORWARD: lambda: _edit(_huge_forward),
    Case.SPEC_HUGE_ACTIVATION: lambda: _edit(_set("spec/input/shape", [1, 1024, 1024])),
    Case.SPEC_HUGE_INPUT: lambda: _edit(_set("spec/input/shape", [1, 100_000, 100_000])),
    Case.SPEC_TOO_MANY_PARAMETERS: lambda: _edit(
        lambda h, b: h["spec"]["layers"][7].update(kernel_size=61, padding=30)  # conv3: 32*32*61*61 weights
    ),
    Case.CLASS_NAMES_COUNT: lambda: _edit(_set("class_names", ["a", "b", "c"])),
}


def test_every_case_has_a_builder() -> None:
    assert set(BUILDERS) == set(Case)
    assert len(Case) >= 30


def test_base_files_are_valid(tmp_path: Path) -> None:
    for data in (BASE, SMALL, _edit(lambda h, b: None)):
        path = tmp_path / "ok.albsnn"
        path.write_bytes(data)
        read_container(path)


@pytest.mark.parametrize("case", list(Case), ids=lambda case: case.name.lower())
def test_malformed_file_is_rejected(tmp_path: Path, case: Case) -> None:
    path = tmp_path / "bad.albsnn"
    path.write_bytes(BUILDERS[case]())
    start = time.perf_counter()
    with pytest.raises(ContainerError, match=case.value) as info:
        read_container(path)
    assert time.perf_counter() - start < 5.0, "rejection must be fast"
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match=r"no such file"):
        read_container(tmp_path / "absent.albsnn")


def test_folder_or_fifo_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match=r"not a regular file"):
        read_container(tmp_path)
    fifo = tmp_path / "pipe.albsnn"
    os.mkfifo(fifo)
    with pytest.raises(ContainerError, match=r"pipe\.albsnn: not a regular file"):
        read_container(fifo)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.albsnn"
    path.write_bytes(BASE)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(ContainerError, match=r"m\.albsnn: cannot read \(Permission denied\)"):
        read_container(path)


def _read_bytes(folder: Path, data: bytes) -> None:
    path = folder / "fuzz.albsnn"
    path.write_bytes(data)
    try:
        read_container(path)
    except ContainerError as exc:
        assert "\n" not in str(exc), "one line"


_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, len(SMALL))),
)
def test_random_flips_and_truncations(tmp_path: Path, flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(SMALL)
    for position, mask in flips:
        data[position] ^= mask
    _read_bytes(tmp_path, bytes(data[:cut] if cut is not None else data))


@_FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(_raw_header(SMALL)) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_random_header_edits_with_a_repaired_crc(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    raw = bytearray(_raw_header(SMALL))
    for position, value in flips:
        raw[position] = value
    _read_bytes(tmp_path, _file(bytes(raw), _split(SMALL)[1]))
