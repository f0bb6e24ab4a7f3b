"""The ``.albsnn`` framing as constants and checks: preamble, header JSON, tensor table, data layout.

``docs/format.md`` is the specification; this module is the executable form of
its framing rules and shares its vocabulary (preamble, header, data section,
tensor entry). Everything here is checked before any tensor is allocated; the
architecture checks (does the tensor table match the spec?) are
:mod:`albsnn_compress.formats.container.architecture`. Every check raises
:class:`ContainerError` naming the field and the problem; the reader in
:mod:`albsnn_compress.formats.container.file` adds the file name. The two format
versions differ only here: version 2 adds the header field ``precisions`` and the
kinds ``int2``, ``int4`` and ``int8``, which a version-1 file may not use.

File layout (little-endian)::

    preamble  24 bytes   magic[8] | version u32 | header_crc32 u32 | header_len u64
    header    header_len UTF-8 JSON object, padded with spaces (0x20) so the data section is aligned
    data      tensors at 64-byte aligned offsets (relative to the data start), zero padding between them
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from albsnn_compress import limits
from albsnn_compress.errors import ContainerError, StrictJSONError
from albsnn_compress.files.file_kind import CONTAINER_MAGIC, sniff
from albsnn_compress.files.model_cost import MAX_TIMESTEPS
from albsnn_compress.files.strict_json import strict_loads
from albsnn_compress.formats.bitpack import codes_size

__all__ = [
    "MAGIC",
    "PLAIN_VERSION",
    "KBIT_VERSION",
    "SUPPORTED_VERSIONS",
    "ALIGNMENT",
    "PREAMBLE",
    "KINDS",
    "CODE_KINDS",
    "HEADER_FIELDS",
    "PRECISIONS_FIELD",
    "TENSOR_FIELDS",
    "MAX_HEADER_BYTES",
    "MAX_TIMESTEPS",
    "TensorEntry",
    "align_up",
    "expected_nbytes",
    "encode_header",
    "parse_preamble",
    "decode_header",
    "validate_header",
    "check_layout",
    "crc32",
]

MAGIC = CONTAINER_MAGIC  # 0x89 "ALBSNN" 0x0A
PLAIN_VERSION = 1
"""The version of a file without k-bit layers: every file written before version 2 existed, byte for byte."""
KBIT_VERSION = 2
"""The version of a file with at least one 2-, 4- or 8-bit layer: adds ``precisions`` and the kinds ``int2/4/8``."""
SUPPORTED_VERSIONS = (PLAIN_VERSION, KBIT_VERSION)
ALIGNMENT = 64
PREAMBLE = struct.Struct("<8sIIQ")  # magic, version, header_crc32, header_len
CODE_KINDS = {"int2": 2, "int4": 4, "int8": 8}
"""Kinds of packed k-bit codes (version 2) -> bits per code, in the layout of :mod:`albsnn_compress.formats.bitpack`."""
KINDS = ("binary", "float32", "float16", *CODE_KINDS)
_VERSION_KINDS = {PLAIN_VERSION: KINDS[:3], KBIT_VERSION: KINDS}
PRECISIONS_FIELD = "precisions"
HEADER_FIELDS = (
    "accuracy",
    "binarized",
    "budget",
    "class_names",
    "metadata",
    "source_sha256",
    "spec",
    "tensors",
    "timesteps",
)
"""The top-level fields of a version-1 header; version 2 adds :data:`PRECISIONS_FIELD`."""
TENSOR_FIELDS = ("crc32", "kind", "name", "nbytes", "offset", "shape")

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = limits.MAX_JSON_DEPTH
MAX_JSON_CONTAINERS = 1 << 18  # objects and arrays; 65536 tensors and 4096 layers need about 145000
MAX_INT_DIGITS = 20
MAX_TENSORS = 65536
MAX_NAME_BYTES = 256
MAX_RANK = 8
MAX_METADATA_ENTRIES = 256
MAX_METADATA_BYTES = 64 * 1024
MAX_ACCURACY_ENTRIES = 64

_BYTES_PER_ELEMENT = {"float32": 4, "float16": 2}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TensorEntry:
    """One row of the header's tensor table; ``offset`` is relative to the data section."""

    name: str
    kind: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    crc32: int

    @property
    def numel(self) -> int:
        """Element count (``1`` for a scalar of shape ``[]``)."""
        return math.prod(self.shape)

    @property
    def end(self) -> int:
        """First byte after the tensor, relative to the data section."""
        return self.offset + self.nbytes

    def as_json(self) -> dict[str, Any]:
        """The entry as it appears in the header."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "offset": self.offset,
            "nbytes": self.nbytes,
            "crc32": self.crc32,
        }


def align_up(value: int) -> int:
    """``value`` rounded up to a multiple of :data:`ALIGNMENT`."""
    return -(-value // ALIGNMENT) * ALIGNMENT


def expected_nbytes(kind: str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes a tensor of ``kind`` and ``shape`` occupies: ``ceil(n/8)`` for binary, ``ceil(n*k/8)`` for ``intk``,
    ``n*size`` otherwise."""
    count = math.prod(shape)
    if kind == "binary":
        return (count + 7) // 8
    if kind in CODE_KINDS:
        return codes_size(count, CODE_KINDS[kind])
    return count * _BYTES_PER_ELEMENT[kind]


def encode_header(header: dict[str, Any]) -> bytes:
    """Canonical header bytes: sorted keys, no spaces, UTF-8, space-padded so the data start is aligned."""
    try:
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise ContainerError(f"header: text {bad!r} is not encodable as UTF-8 (unpaired surrogate)") from exc
    return text + b" " * ((-(PREAMBLE.size + len(text))) % ALIGNMENT)


def _bad_magic(head: bytes) -> ContainerError:
    """The error for a file that does not start with the magic: what it is instead, and what was expected."""
    found = sniff(head)
    if found.kind == "damaged-container":
        return ContainerError(f"magic: the file starts like {found.description}; copy it again in binary mode")
    what = "" if found.kind == "unknown" else f"; it is {found.description}"
    if found.kind == "zip":
        what += " (a model.pt checkpoint? eval takes those too)"
    return ContainerError(f"magic: not an .albsnn file (starts with {head[:8]!r}, expected {MAGIC!r}){what}")


def parse_preamble(preamble: bytes, file_size: int) -> tuple[int, int, int]:
    """Check magic, version and header length against the file size; return ``(version, header_crc32, header_len)``."""
    if file_size < PREAMBLE.size:
        if preamble[: len(MAGIC)] != MAGIC[: len(preamble)]:
            raise _bad_magic(preamble)
        raise ContainerError(
            f"preamble: file is truncated ({file_size} bytes, the preamble alone needs {PREAMBLE.size})"
        )
    magic, version, header_crc, header_len = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise _bad_magic(preamble)
    if version not in SUPPORTED_VERSIONS:
        raise ContainerError(
            f"version: format version {version} is not supported (this reader supports {list(SUPPORTED_VERSIONS)}); "
            "upgrade albsnn-compress or rewrite the file with this version"
        )
    if header_len > MAX_HEADER_BYTES:
        raise ContainerError(f"header_len: {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
    if header_len > file_size - PREAMBLE.size:
        raise ContainerError(
            f"header_len: {header_len} bytes but only {file_size - PREAMBLE.size} follow the preamble (truncated file?)"
        )
    if (PREAMBLE.size + header_len) % ALIGNMENT:
        raise ContainerError(
            f"header_len: {header_len} leaves the data section unaligned (preamble + header must be a multiple of "
            f"{ALIGNMENT})"
        )
    return version, header_crc, header_len


def decode_header(raw: bytes) -> dict[str, Any]:
    """Parse header bytes: strict UTF-8, one JSON object, then only space padding.

    Rejects duplicate keys, NaN/Infinity, integers over 20 digits, nesting over 32
    levels, more than 2^18 objects and arrays, and unpaired surrogate escapes.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContainerError(f"header: not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
    try:
        value = strict_loads(
            text,
            max_depth=MAX_JSON_DEPTH,
            max_int_digits=MAX_INT_DIGITS,
            trailing=" ",
            max_containers=MAX_JSON_CONTAINERS,
        )
    except StrictJSONError as exc:
        raise ContainerError(f"header JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ContainerError(f"header JSON: top level is {type(value).__name__}, expected an object")
    return value


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _utf8_len(text: str) -> int:
    """UTF-8 size; unpaired surrogates count as 3 bytes here and are rejected by the JSON checks."""
    return len(text.encode("utf-8", "surrogatepass"))


def _check_string_map(value: Any, field: str, *, numbers: bool, max_entries: int, max_bytes: int) -> None:
    if not isinstance(value, dict):
        raise ContainerError(f"field {field!r}: expected an object, got {type(value).__name__}")
    if len(value) > max_entries:
        raise ContainerError(f"field {field!r}: {len(value)} entries, at most {max_entries} allowed")
    total = 0
    for key, item in value.items():
        if numbers and not _is_number(item):
            raise ContainerError(f"field {field!r}: value of {key!r} must be a finite number, got {item!r}")
        if not numbers and not isinstance(item, str):
            raise ContainerError(f"field {field!r}: value of {key!r} must be a string, got {type(item).__name__}")
        total += _utf8_len(key) + (_utf8_len(item) if isinstance(item, str) else 0)
    if total > max_bytes:
        raise ContainerError(f"field {field!r}: {total} bytes of keys and values, at most {max_bytes} allowed")


def _check_name(name: Any, field: str) -> str:
    if not isinstance(name, str) or not name:
        raise ContainerError(f"field {field!r}: expected a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ContainerError(f"field {field!r}: name {name!r} contains a NUL character")
    limits.check_name(name, f"field {field!r}", ContainerError)  # the readers' shared name rule
    if _utf8_len(name) > MAX_NAME_BYTES:
        raise ContainerError(f"field {field!r}: name is longer than {MAX_NAME_BYTES} bytes")
    return name


def _check_fields(value: dict[str, Any], expected: tuple[str, ...], where: str) -> None:
    missing = [key for key in expected if key not in value]
    if missing:
        raise ContainerError(f"{where}: missing field {missing[0]!r}")
    unknown = sorted(set(value) - set(expected))
    if unknown:
        raise ContainerError(f"{where}: unknown field {unknown[0]!r} (known fields: {', '.join(expected)})")


def _check_tensor(raw: Any, index: int, version: int) -> TensorEntry:
    where = f"tensors[{index}]"
    if not isinstance(raw, dict):
        raise ContainerError(f"field {where!r}: expected an object, got {type(raw).__name__}")
    _check_fields(raw, TENSOR_FIELDS, where)
    name = _check_name(raw["name"], f"{where}.name")
    where = f"tensor {name!r}"
    kinds = _VERSION_KINDS[version]
    if raw["kind"] not in kinds:
        raise ContainerError(
            f"{where}: unknown kind {raw['kind']!r} (the kinds of format version {version}: {', '.join(kinds)})"
        )
    shape = raw["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise ContainerError(f"{where}: shape must be a list of at most {MAX_RANK} dimensions, got {shape!r}")
    for axis, dim in enumerate(shape):
        if not _is_int(dim) or dim < 0:
            raise ContainerError(f"{where}: shape[{axis}] must be an integer >= 0, got {dim!r} ({type(dim).__name__})")
    limits.element_count(shape, where, ContainerError)  # before any size is computed from it
    for key in ("offset", "nbytes", "crc32"):
        if not _is_int(raw[key]) or raw[key] < 0:
            raise ContainerError(f"{where}: {key} must be an integer >= 0, got {raw[key]!r}")
    if raw["crc32"] > 0xFFFFFFFF:
        raise ContainerError(f"{where}: crc32 {raw['crc32']} does not fit in 32 bits")
    needed = expected_nbytes(raw["kind"], shape)
    if raw["nbytes"] != needed:
        raise ContainerError(
            f"{where}: nbytes is {raw['nbytes']}, a {raw['kind']} tensor of shape {shape} needs {needed}"
        )
    return TensorEntry(name, raw["kind"], tuple(shape), raw["offset"], raw["nbytes"], raw["crc32"])


def _check_precisions(value: Any) -> None:
    """``precisions``: a non-empty object of layer names to 2, 4 or 8 (a file without k-bit layers is version 1)."""
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_TENSORS:
        raise ContainerError(
            f"field {PRECISIONS_FIELD!r}: expected an object of 1 to {MAX_TENSORS} layer names to bits (a file without "
            "k-bit layers is version 1)"
        )
    for name, bits in value.items():
        _check_name(name, PRECISIONS_FIELD)
        if type(bits) is not int or bits not in CODE_KINDS.values():
            raise ContainerError(
                f"field {PRECISIONS_FIELD!r}: {name!r} has {bits!r} bits, expected 2, 4 or 8 (1 bit is 'binarized')"
            )


def _check_top_fields(header: dict[str, Any], version: int) -> None:
    """Exactly the version's top-level fields: ``precisions`` in every version-2 header and in no version-1 one."""
    if version == PLAIN_VERSION and PRECISIONS_FIELD in header:
        raise ContainerError(
            f"field {PRECISIONS_FIELD!r}: not allowed in a version-1 file (k-bit layers make a version-2 file)"
        )
    fields = HEADER_FIELDS if version == PLAIN_VERSION else tuple(sorted((*HEADER_FIELDS, PRECISIONS_FIELD)))
    _check_fields(header, fields, "header")
    if version == KBIT_VERSION:
        _check_precisions(header[PRECISIONS_FIELD])


def validate_header(header: dict[str, Any], version: int) -> list[TensorEntry]:
    """Check every header field's type and bounds against format ``version`` (not yet the architecture); return the
    tensor table."""
    _check_top_fields(header, version)
    if not isinstance(header["spec"], dict):
        raise ContainerError(f"field 'spec': expected an object, got {type(header['spec']).__name__}")
    timesteps = header["timesteps"]
    if not _is_int(timesteps) or not 1 <= timesteps <= MAX_TIMESTEPS:
        raise ContainerError(f"field 'timesteps': expected an integer in [1, {MAX_TIMESTEPS}], got {timesteps!r}")
    binarized = header["binarized"]
    if not isinstance(binarized, list) or len(binarized) > MAX_TENSORS:
        raise ContainerError(f"field 'binarized': expected a list of layer names, got {type(binarized).__name__}")
    for i, name in enumerate(binarized):
        _check_name(name, f"binarized[{i}]")
    if len(set(binarized)) != len(binarized):
        raise ContainerError("field 'binarized': a layer is listed twice")
    names = header["class_names"]
    if names is not None:
        if not isinstance(names, list):
            raise ContainerError(f"field 'class_names': expected a list of strings or null, got {type(names).__name__}")
        for i, name in enumerate(names):
            _check_name(name, f"class_names[{i}]")
    _check_string_map(
        header["accuracy"], "accuracy", numbers=True, max_entries=MAX_ACCURACY_ENTRIES, max_bytes=MAX_METADATA_BYTES
    )
    budget = header["budget"]
    if budget is not None and (not _is_number(budget) or budget < 0):
        raise ContainerError(f"field 'budget': expected a number >= 0 or null, got {budget!r}")
    digest = header["source_sha256"]
    if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise ContainerError(f"field 'source_sha256': expected 64 lowercase hex digits or null, got {digest!r}")
    _check_string_map(
        header["metadata"], "metadata", numbers=False, max_entries=MAX_METADATA_ENTRIES, max_bytes=MAX_METADATA_BYTES
    )
    tensors = header["tensors"]
    if not isinstance(tensors, list) or not 1 <= len(tensors) <= MAX_TENSORS:
        raise ContainerError(f"field 'tensors': expected a list of 1 to {MAX_TENSORS} entries")
    entries = [_check_tensor(raw, i, version) for i, raw in enumerate(tensors)]
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ContainerError(f"tensor {entry.name!r}: duplicate tensor name")
        seen.add(entry.name)
    return entries


def check_layout(entries: list[TensorEntry], data_size: int) -> None:
    """Require the tensors to tile the data section: aligned, in order, no overlap, no gap, no trailing bytes."""
    cursor, previous = 0, None
    for entry in entries:
        where = f"tensor {entry.name!r}"
        if entry.offset % ALIGNMENT:
            raise ContainerError(f"{where}: offset {entry.offset} is not a multiple of {ALIGNMENT}")
        if entry.offset < cursor:
            raise ContainerError(
                f"{where}: offset {entry.offset} overlaps tensor {previous!r} (it ends at {cursor} after padding); "
                "tensors must be listed in data order"
            )
        if entry.offset > cursor:
            raise ContainerError(
                f"{where}: gap of {entry.offset - cursor} bytes before offset {entry.offset} (expected {cursor})"
            )
        if entry.end > data_size:
            raise ContainerError(
                f"{where}: ends at {entry.end}, past the end of the {data_size}-byte data section (truncated file?)"
            )
        cursor, previous = align_up(entry.end), entry.name
    trailing = data_size - entries[-1].end
    if trailing:
        raise ContainerError(f"data section: {trailing} trailing bytes after the last tensor {previous!r}")


def crc32(data: bytes | memoryview) -> int:
    """CRC-32 (ISO-HDLC, as zlib and PNG compute it) of ``data``."""
    return zlib.crc32(data) & 0xFFFFFFFF
