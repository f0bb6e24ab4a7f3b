"""Sign bits packed 8 per byte: the one bit layout shared by the container and ONNX.

Layout: the tensor is flattened in row-major (C) order; element ``i`` goes to
byte ``i // 8``, bit ``7 - i % 8`` (most significant bit first, bitarray's
``endian="big"``, the same order as ``numpy.packbits``). A set bit means ``+1``
(weight >= 0, so ``sign(0) = +1``), a clear bit ``-1``. The last byte is padded
with zero bits; a tensor of ``n`` weights takes ``ceil(n / 8)`` bytes.

Worked example (the one ``tests/test_bitpack.py`` checks)::

    weights  [+0.3, -0.1, 0.0, -2.0, +1.0, +1.0, -0.5, +0.2, -0.7, +0.9]
    bits      1     0     1    0     1     1     0     1   | 0     1  (000000 pad)
    bytes    0b10101101 = 0xAD,  0b01000000 = 0x40
"""

from __future__ import annotations

import numpy as np
import torch
from bitarray import bitarray

__all__ = ["packed_size", "pack_signs", "unpack_signs", "unpack_bits"]


def packed_size(count: int) -> int:
    """Bytes that ``count`` packed sign bits occupy (``ceil(count / 8)``)."""
    return (count + 7) // 8


def pack_signs(weight: torch.Tensor | np.ndarray) -> bytes:
    """Pack ``weight >= 0`` of a tensor as bits (see the module docstring for the layout)."""
    array = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    bits = bitarray(endian="big")
    bits.pack(np.ascontiguousarray(array.reshape(-1) >= 0).view(np.uint8).tobytes())
    return bits.tobytes()


def unpack_bits(data: bytes, count: int) -> np.ndarray:
    """The first ``count`` bits of ``data`` as a uint8 array of 0/1."""
    bits = bitarray(endian="big")
    bits.frombytes(bytes(data))
    return np.frombuffer(bits[:count].unpack(), dtype=np.uint8)


def unpack_signs(data: bytes, shape: tuple[int, ...] | list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unpack bits to a ``+1/-1`` tensor of ``shape`` (inverse of :func:`pack_signs`)."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    bits = unpack_bits(data, count).astype(np.float32)
    return torch.from_numpy(bits * 2.0 - 1.0).to(dtype).reshape(tuple(shape))
