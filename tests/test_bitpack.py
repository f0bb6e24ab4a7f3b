"""The 1-bit layout: the worked example of the docs, round trips, and numpy.packbits equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albsnn_compress.formats.bitpack import pack_signs, packed_size, unpack_bits, unpack_signs

WORKED_WEIGHTS = [0.3, -0.1, 0.0, -2.0, 1.0, 1.0, -0.5, 0.2, -0.7, 0.9]
WORKED_BYTES = bytes([0xAD, 0x40])  # 0b10101101, 0b01000000: docs/format.md and bitpack's docstring


def test_worked_example_bytes() -> None:
    assert pack_signs(torch.tensor(WORKED_WEIGHTS)) == WORKED_BYTES


def test_worked_example_unpacks_to_signs() -> None:
    signs = unpack_signs(WORKED_BYTES, [10])
    expected = torch.tensor([1.0, -1, 1, -1, 1, 1, -1, 1, -1, 1])
    assert torch.equal(signs, expected)


def test_worked_example_is_in_the_spec() -> None:
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text(encoding="utf-8")
    assert "0xAD" in spec and "0x40" in spec and "+0.3, -0.1, 0.0, -2.0, +1.0, +1.0, -0.5, +0.2, -0.7, +0.9" in spec


def test_zero_and_negative_zero_are_plus() -> None:
    assert pack_signs(torch.tensor([0.0, -0.0, -1e-30, 1e-30, 0, 0, 0, 0])) == bytes([0b11011111])


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000])
def test_packed_size_is_ceil_of_eighth(count: int) -> None:
    assert packed_size(count) == -(-count // 8)
    assert len(pack_signs(np.ones(count, dtype=np.float32))) == packed_size(count)


@pytest.mark.parametrize("shape", [(1,), (5,), (8,), (13,), (4, 3), (16, 1, 3, 3), (32, 16, 3, 3), (10, 64), (3, 5, 7, 2), ()])
def test_round_trip(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(sum(shape) + len(shape))
    weight = torch.randn(shape, generator=generator)
    signs = unpack_signs(pack_signs(weight), list(shape))
    assert signs.shape == weight.shape
    assert torch.equal(signs, torch.where(weight >= 0, 1.0, -1.0))


@pytest.mark.parametrize("count", [1, 3, 8, 11, 100, 4096, 12345])
def test_matches_numpy_packbits(count: int) -> None:
    weight = np.random.default_rng(count).standard_normal(count).astype(np.float32)
    packed = pack_signs(weight)
    assert packed == np.packbits(weight >= 0).tobytes()
    assert np.array_equal(unpack_bits(packed, count), np.unpackbits(np.frombuffer(packed, np.uint8), count=count))


def test_padding_bits_are_zero() -> None:
    packed = pack_signs(np.ones(11, dtype=np.float32))
    assert packed == bytes([0xFF, 0b11100000])


def test_unpack_signs_dtype() -> None:
    assert unpack_signs(bytes([0x80]), [2], dtype=torch.float16).dtype == torch.float16
