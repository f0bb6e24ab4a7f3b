"""The ``.albsnn`` container: write a compressed model at its bits per weight, read it back bit-exactly.

A container is a 24-byte preamble, a JSON header (architecture, binarized and k-bit
layers, class names, accuracies, budget, source hash, metadata and a tensor table) and a
data section of 64-byte aligned tensors; ``docs/format.md`` is the full
specification; :mod:`albsnn_compress.formats.container.header` (framing) and
:mod:`albsnn_compress.formats.container.architecture` (architecture) are its checks.

A binarized layer ``layers.convN`` stores ``layers.convN.weight`` as packed sign
bits (:mod:`albsnn_compress.formats.bitpack`) and ``layers.convN.weight_scale``
as float32 ``[C_out]``. A layer of 2, 4 or 8 bits (:mod:`albsnn_compress.precision`)
stores its codes packed at those bits (kind ``int2``, ``int4``, ``int8``) and
``layers.convN.weight_clip``, float32 ``[C_out]``; such a file is format version 2,
any other version 1, byte for byte as before version 2 existed. Every other tensor
is float32 (or float16 on request). The reader rebuilds ``alpha * sign`` and
``codes * clip / Q`` exactly, so its model's outputs are ``torch.equal`` to the
written model's.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize

from albsnn_compress.binarize import binarized_layers, binary_scale, weight_parametrizations
from albsnn_compress.errors import ContainerError
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.files.file_kind import HEAD_BYTES, sniff
from albsnn_compress.formats.bitpack import pack_codes, pack_signs, unpack_codes, unpack_signs
from albsnn_compress.formats.container.architecture import (
    CLIP_SUFFIX,
    SCALE_SUFFIX,
    Expected,
    architecture_tensors,
    check_tensor_set,
    instantiate,
)
from albsnn_compress.formats.container.header import (
    CODE_KINDS,
    KBIT_VERSION,
    MAGIC,
    PLAIN_VERSION,
    PREAMBLE,
    PRECISIONS_FIELD,
    TensorEntry,
    align_up,
    check_layout,
    crc32,
    decode_header,
    encode_header,
    parse_preamble,
    validate_header,
)
from albsnn_compress.precision import FLOAT_BITS, layer_bits, precision, weight_codes
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


def _bad_values(name: str, bad: float, nonnegative: bool) -> ContainerError:
    """The writer's refusal of a value the reader would refuse."""
    wanted = "finite and >= 0" if nonnegative else "finite"
    return ContainerError(
        f"tensor {name!r}: values must be {wanted}, found {bad}; the model is broken (NaN or inf weights?)"
    )


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
        raise _bad_values(name, bad, nonnegative)
    return array.tobytes()


_Item = tuple[str, str, list[int], bytes]
"""One tensor as the writer lays it out: ``(name, kind, shape, bytes)``."""


def _code_items(name: str, latent: torch.Tensor, kind: str) -> list[_Item]:
    """A k-bit weight's packed codes and its per-channel clip, quantized from ``latent`` as the layer does.

    The clip is ``scale * Q``: the quantizer's own float32 clip, exactly (see
    :mod:`albsnn_compress.precision`), so ``clip / Q`` gives the reader the very
    scale the layer multiplies by. A channel of zero weights has clip 0 (its scale
    is a placeholder 1 and every code 0).
    """
    bad = _first_bad(latent.numpy().reshape(-1), nonnegative=False)
    if bad is not None:  # NaN codes would cast to arbitrary integers
        raise _bad_values(name, bad, nonnegative=False)
    bits = CODE_KINDS[kind]
    codes, scale = weight_codes(latent, bits)
    reached = codes.flatten(1).abs().amax(dim=1) > 0
    clip = torch.where(reached, scale * precision(bits).max_code, 0.0).float()
    clip_name = name + CLIP_SUFFIX
    return [
        (name, kind, list(codes.shape), pack_codes(codes, bits)),
        (clip_name, "float32", list(clip.shape), _float_bytes(clip_name, clip, "float32", nonnegative=True)),
    ]


def _encode_tensors(model: SpikingNet, expected: Expected, float_kind: str) -> list[_Item]:
    """``(name, kind, shape, bytes)`` of every tensor the architecture needs, in its order.

    A weight's per-channel scale or clip, which the architecture lists right after
    it, is encoded together with the weight.
    """
    modules = dict(model.named_modules())

    def effective(name: str) -> torch.Tensor:  # binarized weights come out as alpha * sign
        module, _, attr = name.rpartition(".")
        tensor: torch.Tensor = getattr(modules[module], attr).detach().cpu()
        return tensor

    items: dict[str, _Item] = {}
    for name, (kinds, _) in expected.items():
        if name in items:
            continue
        if kinds == ("binary",):
            weight = effective(name)
            scale, scale_name = binary_scale(weight), name + SCALE_SUFFIX
            items[name] = (name, "binary", list(weight.shape), pack_signs(weight))
            items[scale_name] = (
                scale_name,
                "float32",
                list(scale.shape),
                _float_bytes(scale_name, scale, "float32", nonnegative=True),
            )
        elif kinds[0] in CODE_KINDS:
            latent = weight_parametrizations(modules[name.rpartition(".")[0]]).original
            for item in _code_items(name, latent.detach().cpu().to(torch.float32), kinds[0]):
                items[item[0]] = item
        else:
            tensor = effective(name)
            variance = name.endswith(".running_var")
            items[name] = (
                name,
                float_kind,
                list(tensor.shape),
                _float_bytes(name, tensor, float_kind, nonnegative=variance),
            )
    return list(items.values())


def _file_parts(
    model: SpikingNet,
    class_names: list[str] | None,
    accuracy: dict[str, float] | None,
    budget: float | None,
    source_sha256: str | None,
    metadata: dict[str, str] | None,
    float_kind: str,
) -> list[bytes]:
    """The file as its consecutive parts: preamble, header, then padding and bytes of each tensor.

    Version 2 exactly when the model has a layer of 2, 4 or 8 bits (its header adds
    ``precisions``); otherwise version 1, as written before version 2 existed.
    """
    if float_kind not in FLOAT_KINDS:
        raise ContainerError(f"float_kind {float_kind!r}: choose one of {FLOAT_KINDS}")
    precisions = {name: bits for name, bits in layer_bits(model).items() if 1 < bits < FLOAT_BITS}
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
    if precisions:
        header[PRECISIONS_FIELD] = precisions
    version = KBIT_VERSION if precisions else PLAIN_VERSION
    _, expected = architecture_tensors(header, None)
    table, blobs, offset = [], [], 0
    for name, kind, shape, blob in _encode_tensors(model, expected, float_kind):
        offset = align_up(offset)
        table.append(TensorEntry(name, kind, tuple(shape), offset, len(blob), crc32(blob)))
        blobs.append(blob)
        offset += len(blob)
    header["tensors"] = [entry.as_json() for entry in table]
    # The writer runs the reader's checks, so it never writes a file the reader rejects.
    check_tensor_set(validate_header(header, version), expected)
    raw = encode_header(header)
    parts, cursor = [PREAMBLE.pack(MAGIC, version, crc32(raw), len(raw)), raw], 0
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
    """Write ``model`` (binarized and k-bit layers packed at their bits) to ``path`` atomically and deterministically.

    The same model and arguments always give byte-identical files (no timestamps,
    canonical JSON). A model with a layer of 2, 4 or 8 bits
    (:func:`albsnn_compress.precision.set_precision_`) makes a version-2 file; any
    other model a version-1 file.

    Args:
        path: target file (``.albsnn``); replaced only once the new file is complete.
        model: the compressed :class:`SpikingNet` (binarized layers marked with ``binarize_``, k-bit ones with
            ``set_precision_``).
        class_names: one name per class, or ``None``.
        accuracy: accuracies in percent, e.g. ``{"val_before": 98.1, "test_after": 97.6}``.
        budget: the allowed accuracy drop in percentage points, or ``None``.
        source_sha256: hex SHA-256 of the checkpoint the model came from (:func:`sha256_file`).
        metadata: free-form string-to-string pairs; ``dataset`` names the dataset for ``eval``.
        float_kind: ``"float32"`` (exact) or ``"float16"`` (half the bytes, rounded) for
            the float tensors; scales and clips are always float32.

    Raises:
        ContainerError: a header value is out of bounds (e.g. non-string metadata).
    """
    parts = _file_parts(model, class_names, accuracy, budget, source_sha256, metadata, float_kind)
    with atomic_write(path) as stream:
        for part in parts:
            stream.write(part)


_CHUNK = 1 << 18  # elements checked or unpacked at a time: the reader's temporaries stay about 1 MiB
_CODE_CHUNK = 1 << 15  # k-bit codes decoded at a time: with their channel indices and float64 products, about 1 MiB


def _padding_mask(entry: TensorEntry) -> int:
    """The bits of a packed tensor's last byte that hold no element: the low ones of sign bits (most significant
    first), the high ones of k-bit codes (least significant first); 0 for a float tensor or a full last byte."""
    if entry.kind == "binary":
        return (1 << ((-entry.numel) % 8)) - 1
    if entry.kind in CODE_KINDS:
        spare = (-entry.numel * CODE_KINDS[entry.kind]) % 8
        return ((1 << spare) - 1) << (8 - spare)
    return 0


def _check_tensor_bytes(entry: TensorEntry, data: memoryview) -> None:
    """CRC-32 and, for a packed tensor, zero padding bits (no copy of the tensor)."""
    blob = data[entry.offset : entry.end]
    if crc32(blob) != entry.crc32:
        raise ContainerError(
            f"tensor {entry.name!r}: crc32 mismatch (header {entry.crc32:#010x}, data {crc32(blob):#010x}); the file "
            "is corrupt"
        )
    mask = _padding_mask(entry)
    if mask and blob[-1] & mask:
        spare = bin(mask).count("1")
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
    """Every float tensor finite; scales, clips and batch-norm variances also ``>= 0`` (a NaN makes a model that
    cannot work)."""
    for entry in entries:
        if entry.kind not in FLOAT_KINDS:
            continue
        is_scale = entry.name.endswith(SCALE_SUFFIX) and entry.kind == "float32"
        is_clip = entry.name.endswith(CLIP_SUFFIX) and entry.kind == "float32"
        is_variance = entry.name.endswith(".running_var")
        bad = _first_bad(_floats(entry, data), nonnegative=is_scale or is_clip or is_variance)
        if bad is None:
            continue
        where = f"tensor {entry.name!r}"
        if is_scale:
            raise ContainerError(f"{where}: scales must be finite and >= 0 (mean |W|), found {bad}")
        if is_clip:
            raise ContainerError(
                f"{where}: clips must be finite and >= 0 (the weight of the largest code), found {bad}"
            )
        if is_variance:
            raise ContainerError(
                f"{where}: a batch-norm variance must be finite and >= 0, found {bad}; the file is corrupt"
            )
        raise ContainerError(f"{where}: values must be finite, found {bad}; the model it was written from is broken")


def _code_chunks(entry: TensorEntry, data: memoryview) -> Iterator[tuple[int, np.ndarray]]:
    """``(first element, codes as int8)`` of a k-bit tensor, :data:`_CODE_CHUNK` codes at a time."""
    bits = CODE_KINDS[entry.kind]
    blob = data[entry.offset : entry.end]
    for start in range(0, entry.numel, _CODE_CHUNK):  # a multiple of 8: every chunk starts on a byte
        count = min(_CODE_CHUNK, entry.numel - start)
        yield start, unpack_codes(blob[start * bits // 8 :], count, bits)


def _per_channel(entry: TensorEntry) -> int:
    """Codes per output channel (the first dimension) of a k-bit weight; 1 for an empty one, which has no chunk."""
    return entry.numel // entry.shape[0] if entry.numel else 1


def _channel_peaks(entry: TensorEntry, data: memoryview, top: int) -> np.ndarray:
    """Each output channel's largest |code|; refuses a code below ``-top`` (``-top - 1`` fits the bits, but the
    codes are narrow-range, and ``top`` is the largest that fits)."""
    per_channel = _per_channel(entry)
    peaks = np.zeros(entry.shape[0], dtype=np.int8)
    for start, codes in _code_chunks(entry, data):
        low = np.flatnonzero(codes < -top)
        if low.size:
            raise ContainerError(
                f"tensor {entry.name!r}: code {codes[low[0]]} at element {start + low[0]} is outside -{top}..{top} "
                f"(the narrow range of {entry.kind})"
            )
        first, last = start // per_channel, (start + codes.size - 1) // per_channel
        starts = np.maximum(np.arange(first, last + 1) * per_channel - start, 0)
        np.maximum(peaks[first : last + 1], np.maximum.reduceat(np.abs(codes), starts), out=peaks[first : last + 1])
    return peaks


def _check_codes(entry: TensorEntry, data: memoryview, clip: np.ndarray) -> None:
    """Codes within ``-Q..Q``, and per channel: clip 0 with every code 0, a clip > 0 with the largest |code| ``Q``.

    That is what the quantizer writes, and what makes re-marking the layer exact:
    the quantizer recomputes its clip from the largest rebuilt weight, ``Q * clip / Q``,
    which is the stored clip only when some code is ``±Q``.
    """
    top = precision(CODE_KINDS[entry.kind]).max_code
    peaks = _channel_peaks(entry, data, top)
    zero = clip == 0
    wrong = np.flatnonzero(np.where(zero, peaks != 0, peaks != top))
    if not wrong.size:
        return
    channel, where = int(wrong[0]), f"tensor {entry.name!r}"
    if zero[channel]:
        raise ContainerError(
            f"{where}: channel {channel} has clip 0 but a nonzero code (clip 0 means all its weights are 0)"
        )
    raise ContainerError(
        f"{where}: the largest |code| of channel {channel} is {peaks[channel]}, expected {top} (a channel whose clip "
        f"is > 0 reaches +-{top}, or reading would not reproduce its scale)"
    )


def _check_all_codes(entries: list[TensorEntry], data: memoryview) -> None:
    """:func:`_check_codes` for every k-bit weight, against its clip."""
    clips = {entry.name: entry for entry in entries if entry.name.endswith(CLIP_SUFFIX)}
    for entry in entries:
        if entry.kind in CODE_KINDS:
            _check_codes(entry, data, _floats(clips[entry.name + CLIP_SUFFIX], data))


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


def _fill_codes(target: torch.Tensor, entry: TensorEntry, data: memoryview, clip: np.ndarray) -> None:
    """Write ``codes * (clip / Q)`` into ``target`` in place, :data:`_CODE_CHUNK` codes at a time.

    Computed as the precision's parametrization computes its weights: a float64
    product of the code and the float64 scale, rounded once to float32.
    """
    scale = clip.astype(np.float64) / precision(CODE_KINDS[entry.kind]).max_code
    flat = target.numpy().reshape(-1)
    per_channel = _per_channel(entry)
    for start, codes in _code_chunks(entry, data):
        channels = np.arange(start, start + codes.size) // per_channel
        flat[start : start + codes.size] = codes * scale[channels]


def _mark_precisions(model: SpikingNet, header: dict[str, Any]) -> None:
    """Re-mark the binarized and k-bit layers, as :func:`binarize_` and :func:`set_precision_` do, without their
    trial evaluation.

    ``register_parametrization`` normally runs the parametrization once to check
    the shape and dtype it returns: temporaries of several times the weight
    (float64 means, or float64 codes for every clip a 2- or 4-bit layer tries).
    The reader has checked both already. Both precisions are idempotent bit for
    bit, so the marked layers compute the stored weights.
    """
    modules = dict(model.named_modules())
    bits = {**dict.fromkeys(header["binarized"], 1), **header.get(PRECISIONS_FIELD, {})}
    for name, count in bits.items():
        parametrize.register_parametrization(modules[name], "weight", precision(count).parametrization(), unsafe=True)


def _load_model(model: SpikingNet, header: dict[str, Any], entries: list[TensorEntry], data: memoryview) -> SpikingNet:
    """Write every tensor into the model's own storage (no intermediate copies) and re-mark the binarized and k-bit
    layers."""
    by_name = {entry.name: entry for entry in entries}
    with torch.no_grad():
        for key, target in model.state_dict().items():  # tensors that share the model's storage
            module, _, attr = key.rpartition(".")
            if attr == "num_batches_tracked":
                continue
            entry = by_name[key]
            if entry.kind == "binary":
                _fill_binary(target, entry, data, _floats(by_name[key + SCALE_SUFFIX], data))
            elif entry.kind in CODE_KINDS:
                _fill_codes(target, entry, data, _floats(by_name[key + CLIP_SUFFIX], data))
            else:
                target.numpy().reshape(-1)[...] = _floats(entry, data)  # float16 widens to float32 exactly
    _mark_precisions(model, header)
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
        entries = validate_header(header, version)
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
    _check_all_codes(entries, data)
    model = _load_model(instantiate(template), header, entries, data)
    return Container(path, version, header, {e.name: e for e in entries}, model, file_size)


def read_container(path: str | os.PathLike[str]) -> Container:
    """Read and fully validate a container, then rebuild its model.

    Everything is checked before anything big is allocated: magic, version,
    header length, JSON, every tensor entry, the tiling of the data section and
    the architecture's tensor set; then each tensor's CRC-32 and padding bits, its
    values, and the codes of k-bit weights against their clips.

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
        "precisions": dict(header.get(PRECISIONS_FIELD, {})),
        "class_names": header["class_names"],
        "accuracy": dict(header["accuracy"]),
        "budget": header["budget"],
        "source_sha256": header["source_sha256"],
        "metadata": dict(header["metadata"]),
        "kinds": by_kind,
    }
