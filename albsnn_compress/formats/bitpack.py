"""Sign bits packed 8 per byte: the one bit layout shared by the container and ONNX.

Layout: the tensor is flattened in row-major (C) order; element ``i`` goes to
byte ``i // 8``, bit ``7 - i % 8`` (most significant bit first: the order of
``numpy.packbits`` with its default ``bitorder="big"``). A set bit means ``+1``
(weight >= 0, so ``sign(0) = +1``), a clear bit ``-1``. The last byte is padded
with zero bits; a tensor of ``n`` weights takes ``ceil(n / 8)`` bytes.

Worked example (the one ``tests/test_bitpack.py`` checks)::

    weights  [+0.3, -0.1, 0.0, -2.0, +1.0, +1.0, -0.5, +0.2, -0.7, +0.9]
    bits      1     0     1    0     1     1     0     1   | 0     1  (000000 pad)
    bytes    0b10101101 = 0xAD,  0b01000000 = 0x40

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

__all__ = ["packed_size", "pack_signs", "unpack_signs", "unpack_bits"]

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
