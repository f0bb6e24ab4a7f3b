"""Sign bits packed 8 per byte, and k-bit integer codes packed 8/k per byte: the layouts formats share.

Layout: the tensor is flattened in row-major (C) order; element ``i`` goes to
byte ``i // 8``, bit ``7 - i % 8`` (most significant bit first: the order of
``numpy.packbits`` with its default ``bitorder="big"``). A set bit means ``+1``
(weight >= 0, so ``sign(0) = +1``), a clear bit ``-1``. The last byte is padded
with zero bits; a tensor of ``n`` weights takes ``ceil(n / 8)`` bytes.

Worked example (the one ``tests/test_bitpack.py`` checks)::

    weights  [+0.3, -0.1, 0.0, -2.0, +1.0, +1.0, -0.5, +0.2, -0.7, +0.9]
    bits      1     0     1    0     1     1     0     1   | 0     1  (000000 pad)
    bytes    0b10101101 = 0xAD,  0b01000000 = 0x40

**k-bit codes** (k = 2, 4, 8; :mod:`albsnn_compress.precision`): the codes, flattened in
row-major order, are k-bit two's-complement fields; element ``i`` takes bits
``(i * k) % 8 .. (i * k) % 8 + k - 1`` of byte ``i * k // 8``, counted from the least
significant bit (the order of ONNX's INT4 and of a C unpacker's ``(byte >> shift) & mask``).
8-bit codes are therefore plain ``int8`` bytes. The last byte is padded with zero bits; a
tensor of ``n`` codes takes ``ceil(n * k / 8)`` bytes. Worked example (4 bits)::

    codes    [3, -1, -7, 0, 5]
    fields    0011 1111 1001 0000 0101 (0000 pad)
    bytes    0xF3 (-1 high, 3 low), 0x09 (0 high, -7 low), 0x05

Speed: packing is ``numpy.packbits`` of ``weight >= 0``, run chunk by chunk
for tensors too large for the CPU cache; unpacking to ``+1/-1`` looks every
byte up in a 256-row table of eight float32 signs, one pass instead of
unpack, convert, scale and shift. ``benchmarks/bench_container.py`` measures
both against bare numpy calls.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "packed_size",
    "pack_signs",
    "unpack_signs",
    "unpack_bits",
    "CODE_BITS",
    "codes_size",
    "pack_codes",
    "unpack_codes",
]

CODE_BITS = (2, 4, 8)
"""The code widths :func:`pack_codes` packs: those that fill a byte exactly."""

# A 0-d float32 zero: numpy compares a float32 array with it directly, without
# first resolving the type of a Python scalar (the comparison of 1K weights is 1.8x faster).
_ZERO = np.zeros((), dtype=np.float32)

# Above this many weights the one-shot ``weight >= 0`` temporary (1 byte per
# weight, over 8 MiB) is evicted by the weights streaming through before
# ``packbits`` reads it back; packing chunks of ``_CHUNK_WEIGHTS`` (1 MiB of
# bools, which stay in the cache) measured 1.05x faster at 16M weights and 1.5x
# at 64M. Below it, one call is as fast.
_CHUNKED_ABOVE_WEIGHTS = 1 << 23
_CHUNK_WEIGHTS = 1 << 20

# Row ``b`` holds the eight signs (+1.0/-1.0, float32) that byte ``b`` encodes, in layout order.
_SIGN_TABLE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32) * 2.0 - 1.0


def packed_size(count: int) -> int:
    """Bytes that ``count`` packed sign bits occupy (``ceil(count / 8)``)."""
    return (count + 7) // 8


def _as_numpy(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """``weight`` as a numpy array on the CPU (no copy for a CPU tensor or an array)."""
    if isinstance(weight, np.ndarray):
        return weight
    return weight.detach().cpu().numpy()


def _pack_chunked(flat: np.ndarray) -> bytes:
    """:func:`pack_signs` of a 1-D array, ``_CHUNK_WEIGHTS`` weights at a time (same bytes)."""
    packed = np.empty(packed_size(flat.size), dtype=np.uint8)
    is_plus = np.empty(_CHUNK_WEIGHTS, dtype=np.bool_)
    for start in range(0, flat.size, _CHUNK_WEIGHTS):  # a multiple of 8: every chunk starts on a byte
        part = flat[start : start + _CHUNK_WEIGHTS]
        chunk_is_plus = is_plus[: part.size]
        np.greater_equal(part, _ZERO, out=chunk_is_plus)
        packed[start // 8 : start // 8 + packed_size(part.size)] = np.packbits(chunk_is_plus)
    return packed.tobytes()


def pack_signs(weight: torch.Tensor | np.ndarray) -> bytes:
    """Pack ``weight >= 0`` of a tensor as bits (see the module docstring for the layout).

    Args:
        weight: a tensor or array of any shape (a torch tensor may be on any device).

    Returns:
        ``packed_size(weight.size)`` bytes.
    """
    array = _as_numpy(weight)
    if array.size > _CHUNKED_ABOVE_WEIGHTS:
        return _pack_chunked(array.reshape(-1))
    return np.packbits(array >= _ZERO).tobytes()  # packbits flattens in C order


def _check_length(data: bytes | memoryview, count: int) -> None:
    if len(data) < packed_size(count):
        raise ValueError(f"packed signs: {count} bits need {packed_size(count)} bytes, got {len(data)}")


def unpack_bits(data: bytes, count: int) -> np.ndarray:
    """The first ``count`` bits of ``data`` as a uint8 array of 0/1.

    Raises:
        ValueError: ``data`` holds fewer than ``count`` bits.
    """
    _check_length(data, count)
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count)


def unpack_signs(
    data: bytes | memoryview, shape: tuple[int, ...] | list[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Unpack bits to a ``+1/-1`` tensor of ``shape`` (inverse of :func:`pack_signs`).

    Raises:
        ValueError: ``data`` holds fewer bits than ``shape`` has elements.
    """
    count = math.prod(shape)
    _check_length(data, count)
    # Positional arguments and numpy-side reshapes: on small tensors, keyword parsing and
    # torch calls would cost more than the lookup itself.
    indices = np.frombuffer(data, np.uint8, packed_size(count))
    signs = torch.from_numpy(_SIGN_TABLE.take(indices, 0).reshape(-1)[:count].reshape(shape))
    return signs if dtype == torch.float32 else signs.to(dtype)


def codes_size(count: int, bits: int) -> int:
    """Bytes that ``count`` packed ``bits``-bit codes occupy (``ceil(count * bits / 8)``)."""
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if bits not in CODE_BITS:
        raise ValueError(f"codes of {bits} bits cannot be packed; the widths are {list(CODE_BITS)}")


def pack_codes(codes: torch.Tensor | np.ndarray, bits: int) -> bytes:
    """Pack integer codes (each within ``bits``-bit two's complement) in the k-bit layout of the module docstring.

    Raises:
        ValueError: ``bits`` is not one of :data:`CODE_BITS`, or a code does not fit in ``bits`` bits.
    """
    _check_bits(bits)
    flat = _as_numpy(codes).reshape(-1).astype(np.int64)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if flat.size and (int(flat.min()) < low or int(flat.max()) > high):
        raise ValueError(f"codes must lie in [{low}, {high}] to pack at {bits} bits")
    fields = (flat & ((1 << bits) - 1)).astype(np.uint8)
    per_byte = 8 // bits
    padded = np.zeros(codes_size(flat.size, bits) * per_byte, dtype=np.uint8)
    padded[: flat.size] = fields
    shifts = (np.arange(per_byte, dtype=np.uint8) * bits)[None, :]
    packed: np.ndarray = np.bitwise_or.reduce(padded.reshape(-1, per_byte) << shifts, axis=1).astype(np.uint8)
    return packed.tobytes()


def unpack_codes(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    """The first ``count`` codes of ``data`` as ``int8`` (inverse of :func:`pack_codes`).

    Raises:
        ValueError: ``bits`` is not one of :data:`CODE_BITS`, or ``data`` holds fewer than ``count`` codes.
    """
    _check_bits(bits)
    if len(data) < codes_size(count, bits):
        raise ValueError(f"packed codes: {count} codes of {bits} bits need {codes_size(count, bits)} bytes")
    per_byte = 8 // bits
    raw = np.frombuffer(data, np.uint8, codes_size(count, bits))
    shifts = (np.arange(per_byte, dtype=np.uint8) * bits)[None, :]
    fields = ((raw[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:count].astype(np.int16)
    return np.where(fields >= 1 << (bits - 1), fields - (1 << bits), fields).astype(np.int8)
