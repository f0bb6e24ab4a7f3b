"""The ``.albsnn`` container: write a compressed model at 1 bit per binary weight, read it back bit-exactly.

A container is a 24-byte preamble, a JSON header (architecture, binarized layers,
class names, accuracies, budget, source hash, metadata and a tensor table) and a
data section of 64-byte aligned tensors; ``docs/format.md`` is the full
specification; :mod:`albsnn_compress.formats.container.header` (framing) and
:mod:`albsnn_compress.formats.container.architecture` (architecture) are its checks.

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
from torch.nn.utils import parametrize

from albsnn_compress.binarize import BinarizeWeight, binarized_layers, binary_scale
from albsnn_compress.errors import ContainerError
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.files.file_kind import HEAD_BYTES, sniff
from albsnn_compress.formats.bitpack import pack_signs, unpack_signs
from albsnn_compress.formats.container.architecture import (
    SCALE_SUFFIX,
    Expected,
    architecture_tensors,
    check_tensor_set,
    instantiate,
)
from albsnn_compress.formats.container.header import (
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

__all__ = [
    "Container",
    "write_container",
    "container_bytes",
    "read_container",
    "container_summary",
    "sha256_file",
    "is_container",
]

FLOAT_KINDS = ("float32", "float16")
_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_ESCAPING = (
    MemoryError,
    RecursionError,
    OverflowError,
    struct.error,
    KeyError,
    IndexError,
    UnicodeDecodeError,
    ValueError,
    TypeError,
)


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
        metadata: dict[str, str] = self.header["metadata"]
        return metadata


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (the ``source_sha256`` of a container written from a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_container(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like an ``.albsnn`` container (cheap; does not validate; ``False`` if unreadable).

    A container whose magic was damaged in transit counts too, so that its reader
    says so instead of a checkpoint reader calling it a foreign file.
    """
    try:
        with open(path, "rb") as stream:
            return sniff(stream.read(HEAD_BYTES)).kind in ("container", "damaged-container")
    except OSError:
        return False


def _plain_number(value: Any) -> Any:
    """numpy/torch scalars as Python floats; anything else unchanged for the header check to judge."""
    if isinstance(value, bool):
        return value
    return float(value) if isinstance(value, numbers.Real) else value


def _float_bytes(name: str, tensor: torch.Tensor, kind: str, *, nonnegative: bool = False) -> bytes:
    """The tensor's bytes as ``kind``; refuses values the reader would refuse (NaN, inf, float16 overflow)."""
    source = tensor.detach().cpu().to(torch.float32).contiguous().numpy()
    array = source.astype(_NUMPY_DTYPES[kind], copy=False)
    bad = _first_bad(array.reshape(-1), nonnegative)
    if bad is not None:
        if kind == "float16" and _first_bad(source.reshape(-1), nonnegative) is None:
            raise ContainerError(
                f"tensor {name!r}: a value overflows float16 (largest 65504); write it with float_kind='float32'"
            )
        wanted = "finite and >= 0" if nonnegative else "finite"
        raise ContainerError(
            f"tensor {name!r}: values must be {wanted}, found {bad}; the model is broken (NaN or inf weights?)"
        )
    return array.tobytes()


def _encode_tensors(model: SpikingNet, expected: Expected, float_kind: str) -> list[tuple[str, str, list[int], bytes]]:
    """``(name, kind, shape, bytes)`` of every tensor the architecture needs, in its order."""
    modules = dict(model.named_modules())

    def effective(name: str) -> torch.Tensor:  # binarized weights come out as alpha * sign
        module, _, attr = name.rpartition(".")
        tensor: torch.Tensor = getattr(modules[module], attr).detach().cpu()
        return tensor

    items = []
    for name, (kinds, _) in expected.items():
        if kinds == ("binary",):
            weight = effective(name)
            items.append((name, "binary", list(weight.shape), pack_signs(weight)))
        elif name.endswith(SCALE_SUFFIX) and kinds == ("float32",):
            scale = binary_scale(effective(name[: -len(SCALE_SUFFIX)]))
            items.append((name, "float32", list(scale.shape), _float_bytes(name, scale, "float32", nonnegative=True)))
        else:
            tensor = effective(name)
            variance = name.endswith(".running_var")
            items.append(
                (name, float_kind, list(tensor.shape), _float_bytes(name, tensor, float_kind, nonnegative=variance))
            )
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


_CHUNK = 1 << 18  # elements checked or unpacked at a time: the reader's temporaries stay about 1 MiB


def _check_tensor_bytes(entry: TensorEntry, data: memoryview) -> None:
    """CRC-32 and, for a binary tensor, zero padding bits (no copy of the tensor)."""
    blob = data[entry.offset : entry.end]
    if crc32(blob) != entry.crc32:
        raise ContainerError(
            f"tensor {entry.name!r}: crc32 mismatch (header {entry.crc32:#010x}, data {crc32(blob):#010x}); the file "
            "is corrupt"
        )
    if entry.kind == "binary":
        spare = (-entry.numel) % 8
        if spare and blob[-1] & ((1 << spare) - 1):
            raise ContainerError(f"tensor {entry.name!r}: the {spare} padding bits of the last byte must be zero")


def _floats(entry: TensorEntry, data: memoryview) -> np.ndarray:
    """A float tensor's values as a read-only flat view of the file's bytes (no copy)."""
    return np.frombuffer(data, dtype=_NUMPY_DTYPES[entry.kind], count=entry.numel, offset=entry.offset)


def _first_bad(values: np.ndarray, nonnegative: bool) -> float | None:
    """The first value that is not finite (or, with ``nonnegative``, below zero), or ``None``; chunked."""
    for start in range(0, values.size, _CHUNK):
        part = values[start : start + _CHUNK]
        good = np.isfinite(part)
        if nonnegative:
            good &= part >= 0
        if not good.all():
            return float(part[~good][0])
    return None


def _check_values(entries: list[TensorEntry], data: memoryview) -> None:
    """Every float tensor finite; scales and batch-norm variances also ``>= 0`` (a NaN makes a model that cannot
    work)."""
    for entry in entries:
        if entry.kind == "binary":
            continue
        is_scale = entry.name.endswith(SCALE_SUFFIX) and entry.kind == "float32"
        is_variance = entry.name.endswith(".running_var")
        bad = _first_bad(_floats(entry, data), nonnegative=is_scale or is_variance)
        if bad is None:
            continue
        where = f"tensor {entry.name!r}"
        if is_scale:
            raise ContainerError(f"{where}: scales must be finite and >= 0 (mean |W|), found {bad}")
        if is_variance:
            raise ContainerError(
                f"{where}: a batch-norm variance must be finite and >= 0, found {bad}; the file is corrupt"
            )
        raise ContainerError(f"{where}: values must be finite, found {bad}; the model it was written from is broken")


def _check_padding(entries: list[TensorEntry], data: memoryview) -> None:
    for before, after in zip(entries, entries[1:]):
        if any(data[before.end : after.offset]):
            raise ContainerError(f"data section: padding after tensor {before.name!r} must be zero bytes")


def _fill_binary(target: torch.Tensor, entry: TensorEntry, data: memoryview, scale: np.ndarray) -> None:
    """Write ``alpha * sign`` into ``target`` in place, unpacking ``_CHUNK`` signs at a time."""
    flat = target.view(-1)
    bits = data[entry.offset : entry.end]
    for start in range(0, entry.numel, _CHUNK):  # a multiple of 8: every chunk starts on a byte
        count = min(_CHUNK, entry.numel - start)
        flat[start : start + count] = unpack_signs(bits[start // 8 :], (count,))
    if entry.numel:
        target.view(target.shape[0], -1).mul_(torch.from_numpy(scale.copy()).view(-1, 1))


def _mark_binarized(model: SpikingNet, names: list[str]) -> None:
    """Re-mark the binarized layers, as :func:`binarize_` does, without its trial evaluation.

    ``register_parametrization`` normally runs the parametrization once to check
    the shape and dtype it returns: for a binarized layer, temporaries of several
    times the weight (float64 means). The reader has checked both already.
    """
    modules = dict(model.named_modules())
    for name in names:
        parametrize.register_parametrization(modules[name], "weight", BinarizeWeight(), unsafe=True)


def _load_model(model: SpikingNet, header: dict[str, Any], entries: list[TensorEntry], data: memoryview) -> SpikingNet:
    """Write every tensor into the model's own storage (no intermediate copies) and re-mark the binarized layers."""
    by_name = {entry.name: entry for entry in entries}
    with torch.no_grad():
        for key, target in model.state_dict().items():  # tensors that share the model's storage
            module, _, attr = key.rpartition(".")
            if attr == "num_batches_tracked":
                continue
            entry = by_name[key]
            if entry.kind == "binary":
                _fill_binary(target, entry, data, _floats(by_name[key + SCALE_SUFFIX], data))
            else:
                target.numpy().reshape(-1)[...] = _floats(entry, data)  # float16 widens to float32 exactly
    _mark_binarized(model, header["binarized"])
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
        del raw
        entries = validate_header(header)
        data_size = file_size - PREAMBLE.size - header_len
        check_layout(entries, data_size)
        template, expected = architecture_tensors(header, data_size)
        check_tensor_set(entries, expected)
        data = memoryview(stream.read(data_size))
    if len(data) != data_size:
        raise ContainerError(f"data section: file changed while reading ({len(data)} of {data_size} bytes)")
    _check_padding(entries, data)
    for entry in entries:
        _check_tensor_bytes(entry, data)
    _check_values(entries, data)
    model = _load_model(instantiate(template), header, entries, data)
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
        raise ContainerError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ContainerError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except _ESCAPING as exc:
        raise ContainerError(f"{path}: malformed container ({type(exc).__name__}: {exc})") from exc


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
