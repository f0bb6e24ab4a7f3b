"""The ``.albsnn`` container: write a compressed model at 1 bit per binary weight, read it back bit-exactly.

A container is a 24-byte preamble, a JSON header (architecture, binarized layers,
class names, accuracies, budget, source hash, metadata and a tensor table) and a
data section of 64-byte aligned tensors; ``docs/format.md`` is the full
specification; :mod:`albsnn_compress.formats.container_header` (framing) and
:mod:`albsnn_compress.formats.container_arch` (architecture) are its checks.

A binarized layer ``layers.convN`` stores ``layers.convN.weight`` as packed sign
bits (:mod:`albsnn_compress.formats.bitpack`) and ``layers.convN.weight_scale``
as float32 ``[C_out]``; every other tensor is float32 (or float16 on request).
The reader rebuilds ``alpha * sign`` exactly, so its model's outputs are
``torch.equal`` to the written model's.

Example:
    >>> write_container("model.albsnn", model, accuracy={"test": 97.1})  # doctest: +SKIP
    >>> container = read_container("model.albsnn")  # doctest: +SKIP
    >>> logits = container.model(images)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import numbers
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from albsnn_compress.atomic import atomic_write
from albsnn_compress.binarize import binarize_, binarized_layers, binary_scale
from albsnn_compress.errors import ContainerError
from albsnn_compress.formats.bitpack import pack_signs, unpack_signs
from albsnn_compress.formats.container_arch import SCALE_SUFFIX, Expected, architecture_tensors, check_tensor_set
from albsnn_compress.formats.container_header import (
    FORMAT_VERSION,
    MAGIC,
    PREAMBLE,
    TensorEntry,
    align_up,
    check_layout,
    crc32,
    decode_header,
    encode_header,
    parse_preamble,
    validate_header,
)
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["Container", "write_container", "container_bytes", "read_container", "container_summary", "sha256_file", "is_container"]

FLOAT_KINDS = ("float32", "float16")
_NUMPY_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_ESCAPING = (MemoryError, RecursionError, OverflowError, struct.error, KeyError, IndexError, UnicodeDecodeError, ValueError, TypeError)


@dataclass
class Container:
    """A validated container: its header, tensor table and the rebuilt model (eval mode, CPU)."""

    path: Path
    version: int
    header: dict[str, Any]
    tensors: dict[str, TensorEntry]
    model: SpikingNet
    file_bytes: int

    @property
    def metadata(self) -> dict[str, str]:
        """Free-form string-to-string metadata (e.g. ``dataset``)."""
        return self.header["metadata"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (the ``source_sha256`` of a container written from a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_container(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the ``.albsnn`` magic (cheap; does not validate; ``False`` if unreadable)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _plain_number(value: Any) -> Any:
    """numpy/torch scalars as Python floats; anything else unchanged for the header check to judge."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def _float_bytes(tensor: torch.Tensor, kind: str) -> bytes:
    array = tensor.detach().cpu().to(torch.float32).contiguous().numpy()
    return array.astype(_NUMPY_DTYPES[kind], copy=False).tobytes()


def _encode_tensors(model: SpikingNet, expected: Expected, float_kind: str) -> list[tuple[str, str, list[int], bytes]]:
    """``(name, kind, shape, bytes)`` of every tensor the architecture needs, in its order."""
    modules = dict(model.named_modules())

    def effective(name: str) -> torch.Tensor:  # binarized weights come out as alpha * sign
        module, _, attr = name.rpartition(".")
        return getattr(modules[module], attr).detach().cpu()

    items = []
    for name, (kinds, _) in expected.items():
        if kinds == ("binary",):
            weight = effective(name)
            items.append((name, "binary", list(weight.shape), pack_signs(weight)))
        elif name.endswith(SCALE_SUFFIX) and kinds == ("float32",):
            scale = binary_scale(effective(name[: -len(SCALE_SUFFIX)]))
            items.append((name, "float32", list(scale.shape), _float_bytes(scale, "float32")))
        else:
            tensor = effective(name)
            items.append((name, float_kind, list(tensor.shape), _float_bytes(tensor, float_kind)))
    return items


def _file_parts(
    model: SpikingNet,
    class_names: list[str] | None,
    accuracy: dict[str, float] | None,
    budget: float | None,
    source_sha256: str | None,
    metadata: dict[str, str] | None,
    float_kind: str,
) -> list[bytes]:
    if float_kind not in FLOAT_KINDS:
        raise ContainerError(f"float_kind {float_kind!r}: choose one of {FLOAT_KINDS}")
    header: dict[str, Any] = {
        "spec": model.spec,
        "timesteps": model.timesteps,
        "binarized": binarized_layers(model),
        "class_names": None if class_names is None else list(class_names),
        "accuracy": {key: _plain_number(value) for key, value in (accuracy or {}).items()},
        "budget": None if budget is None else _plain_number(budget),
        "source_sha256": source_sha256,
        "metadata": dict(metadata or {}),
    }
    _, expected = architecture_tensors(header, None)
    table, blobs, offset = [], [], 0
    for name, kind, shape, blob in _encode_tensors(model, expected, float_kind):
        offset = align_up(offset)
        table.append(TensorEntry(name, kind, tuple(shape), offset, len(blob), crc32(blob)))
        blobs.append(blob)
        offset += len(blob)
    header["tensors"] = [entry.as_json() for entry in table]
    # The writer runs the reader's checks, so it never writes a file the reader rejects.
    check_tensor_set(validate_header(header), expected)
    raw = encode_header(header)
    parts, cursor = [PREAMBLE.pack(MAGIC, FORMAT_VERSION, crc32(raw), len(raw)), raw], 0
    for entry, blob in zip(table, blobs):
        parts += [b"\0" * (entry.offset - cursor), blob]
        cursor = entry.end
    return parts


def container_bytes(
    model: SpikingNet,
    *,
    class_names: list[str] | None = None,
    accuracy: dict[str, float] | None = None,
    budget: float | None = None,
    source_sha256: str | None = None,
    metadata: dict[str, str] | None = None,
    float_kind: str = "float32",
) -> bytes:
    """The container file for ``model`` as bytes; see :func:`write_container` for the arguments."""
    return b"".join(_file_parts(model, class_names, accuracy, budget, source_sha256, metadata, float_kind))


def write_container(
    path: str | os.PathLike[str],
    model: SpikingNet,
    *,
    class_names: list[str] | None = None,
    accuracy: dict[str, float] | None = None,
    budget: float | None = None,
    source_sha256: str | None = None,
    metadata: dict[str, str] | None = None,
    float_kind: str = "float32",
) -> None:
    """Write ``model`` (binarized layers as packed bits) to ``path`` atomically and deterministically.

    The same model and arguments always give byte-identical files (no timestamps,
    canonical JSON).

    Args:
        path: target file (``.albsnn``); replaced only once the new file is complete.
        model: the compressed :class:`SpikingNet` (binarized layers marked with ``binarize_``).
        class_names: one name per class, or ``None``.
        accuracy: accuracies in percent, e.g. ``{"val_before": 98.1, "test_after": 97.6}``.
        budget: the allowed accuracy drop in percentage points, or ``None``.
        source_sha256: hex SHA-256 of the checkpoint the model came from (:func:`sha256_file`).
        metadata: free-form string-to-string pairs; ``dataset`` names the dataset for ``eval``.
        float_kind: ``"float32"`` (exact) or ``"float16"`` (half the bytes, rounded) for
            non-binary tensors; scales are always float32.

    Raises:
        ContainerError: a header value is out of bounds (e.g. non-string metadata).
    """
    parts = _file_parts(model, class_names, accuracy, budget, source_sha256, metadata, float_kind)
    with atomic_write(path) as stream:
        for part in parts:
            stream.write(part)


def _decode_tensor(entry: TensorEntry, data: memoryview) -> np.ndarray | bytes:
    blob = data[entry.offset : entry.end]
    if crc32(blob) != entry.crc32:
        raise ContainerError(
            f"tensor {entry.name!r}: crc32 mismatch (header {entry.crc32:#010x}, data {crc32(blob):#010x}); the file is corrupt"
        )
    if entry.kind == "binary":
        spare = (-entry.numel) % 8
        if spare and blob[-1] & ((1 << spare) - 1):
            raise ContainerError(f"tensor {entry.name!r}: the {spare} padding bits of the last byte must be zero")
        return bytes(blob)
    return np.frombuffer(blob, dtype=_NUMPY_DTYPES[entry.kind]).astype(np.float32).reshape(entry.shape)


def _check_padding(entries: list[TensorEntry], data: memoryview) -> None:
    for before, after in zip(entries, entries[1:]):
        if any(data[before.end : after.offset]):
            raise ContainerError(f"data section: padding after tensor {before.name!r} must be zero bytes")


def _load_model(model: SpikingNet, header: dict[str, Any], entries: list[TensorEntry], data: memoryview) -> SpikingNet:
    """Load the decoded tensors into the architecture's model and re-mark the binarized layers."""
    decoded = {entry.name: _decode_tensor(entry, data) for entry in entries}
    shapes = {entry.name: entry.shape for entry in entries}
    for name in header["binarized"]:
        scale = decoded[f"{name}.weight{SCALE_SUFFIX}"]
        if not np.all(scale >= 0):  # also false for NaN
            bad = scale[~(scale >= 0)][0]
            raise ContainerError(f"tensor '{name}.weight{SCALE_SUFFIX}': scales must be finite and >= 0 (mean |W|), found {bad}")
    state = model.state_dict()
    binarized = set(header["binarized"])
    for key in state:
        module, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        if attr == "weight" and module in binarized:
            alpha = torch.from_numpy(decoded[key + SCALE_SUFFIX])
            signs = unpack_signs(decoded[key], shapes[key])
            state[key] = alpha.view(-1, *([1] * (signs.dim() - 1))) * signs
        else:
            state[key] = torch.from_numpy(decoded[key])
    model.load_state_dict(state)
    binarize_(model, header["binarized"])
    return model.eval()


def _read(path: Path) -> Container:
    if not path.exists():
        raise ContainerError("no such file")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ContainerError("not a regular file")
    with open(path, "rb") as stream:
        file_size = os.fstat(stream.fileno()).st_size
        version, header_crc, header_len = parse_preamble(stream.read(PREAMBLE.size), file_size)
        raw = stream.read(header_len)
        if crc32(raw) != header_crc:
            raise ContainerError(
                f"header: crc32 mismatch (preamble {header_crc:#010x}, header {crc32(raw):#010x}); the file is corrupt"
            )
        header = decode_header(raw)
        entries = validate_header(header)
        data_size = file_size - PREAMBLE.size - header_len
        check_layout(entries, data_size)
        model, expected = architecture_tensors(header, data_size)
        check_tensor_set(entries, expected)
        data = memoryview(stream.read(data_size))
    if len(data) != data_size:
        raise ContainerError(f"data section: file changed while reading ({len(data)} of {data_size} bytes)")
    _check_padding(entries, data)
    model = _load_model(model, header, entries, data)
    return Container(path, version, header, {e.name: e for e in entries}, model, file_size)


def read_container(path: str | os.PathLike[str]) -> Container:
    """Read and fully validate a container, then rebuild its model.

    Everything is checked before anything big is allocated: magic, version,
    header length, JSON, every tensor entry, the tiling of the data section and
    the architecture's tensor set; then each tensor's CRC-32 and padding bits.

    Raises:
        ContainerError: for every kind of malformed, corrupt or hostile file; the
            message names the file, the field and the problem.
    """
    path = Path(path)
    try:
        return _read(path)
    except ContainerError as exc:
        raise ContainerError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ContainerError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except _ESCAPING as exc:
        raise ContainerError(f"{path}: malformed container ({type(exc).__name__}: {exc})") from None


def container_summary(container: Container) -> dict[str, Any]:
    """What ``inspect`` shows: architecture, compression, accuracies and bytes per tensor kind."""
    header = container.header
    spec = container.model.spec
    by_kind: dict[str, dict[str, int]] = {}
    for entry in container.tensors.values():
        row = by_kind.setdefault(entry.kind, {"tensors": 0, "elements": 0, "bytes": 0})
        row["tensors"] += 1
        row["elements"] += entry.numel
        row["bytes"] += entry.nbytes
    return {
        "file": str(container.path),
        "format_version": container.version,
        "file_bytes": container.file_bytes,
        "architecture": spec["name"],
        "input_shape": spec["input"]["shape"],
        "num_classes": spec["num_classes"],
        "timesteps": container.model.timesteps,
        "layers": len(spec["layers"]),
        "binarized": list(header["binarized"]),
        "class_names": header["class_names"],
        "accuracy": dict(header["accuracy"]),
        "budget": header["budget"],
        "source_sha256": header["source_sha256"],
        "metadata": dict(header["metadata"]),
        "kinds": by_kind,
    }
