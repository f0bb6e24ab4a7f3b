"""The 1-bit layout: the worked example of the docs, round trips, and numpy.packbits equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albsnn_compress.formats.bitpack import (
    CODE_BITS,
    codes_size,
    pack_codes,
    pack_signs,
    packed_size,
    unpack_bits,
    unpack_codes,
    unpack_signs,
)

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


@pytest.mark.parametrize(
    "shape", [(1,), (5,), (8,), (13,), (4, 3), (16, 1, 3, 3), (32, 16, 3, 3), (10, 64), (3, 5, 7, 2), ()]
)
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


def reference_pack(values: np.ndarray) -> bytes:
    """The layout of the module docstring, one weight at a time: bit ``7 - i % 8`` of byte ``i // 8``."""
    packed = bytearray(packed_size(values.size))
    for index, value in enumerate(values.reshape(-1).tolist()):
        if value >= 0:
            packed[index // 8] |= 1 << (7 - index % 8)
    return bytes(packed)


def reference_unpack(data: bytes, count: int) -> list[float]:
    return [1.0 if data[index // 8] >> (7 - index % 8) & 1 else -1.0 for index in range(count)]


@pytest.mark.parametrize("count", [0, 1, 2, 7, 8, 9, 31, 33, 255, 257, 1000, 4097, 65537])
def test_random_tensors_match_the_reference(count: int) -> None:
    weight = np.random.default_rng(count).standard_normal(count).astype(np.float32)
    weight[:: max(1, count // 5)] = 0.0  # a few zeros, which pack as +1
    packed = pack_signs(weight)
    assert packed == reference_pack(weight)
    assert unpack_signs(packed, [count]).tolist() == reference_unpack(packed, count)


def test_chunked_packing_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large tensors are packed chunk by chunk; shrink the chunks so a small tensor takes that path."""
    from albsnn_compress.formats import bitpack

    monkeypatch.setattr(bitpack, "_CHUNKED_ABOVE_WEIGHTS", 64)
    monkeypatch.setattr(bitpack, "_CHUNK_WEIGHTS", 24)
    for shape in [(65,), (100,), (9, 13), (5, 4, 3, 3)]:
        weight = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        assert pack_signs(weight) == reference_pack(weight), shape


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8])
def test_other_dtypes_pack_like_float32(dtype: type) -> None:
    weight = np.random.default_rng(3).standard_normal(77) * 4
    assert pack_signs(weight.astype(dtype)) == reference_pack(weight.astype(dtype))


def test_special_values() -> None:
    weight = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45], dtype=np.float32)
    assert pack_signs(weight) == reference_pack(weight) == bytes([0b00101110])


def test_non_contiguous_and_grad_tensors_pack_in_row_major_order() -> None:
    weight = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert pack_signs(weight.t()) == reference_pack(weight.detach().t().contiguous().numpy())
    assert pack_signs(weight.detach().numpy()[:, ::3]) == reference_pack(weight.detach().numpy()[:, ::3].copy())


def test_unpack_ignores_bytes_past_the_count() -> None:
    assert torch.equal(unpack_signs(bytes([0xAD, 0x40, 0xFF]), [10]), unpack_signs(WORKED_BYTES, [10]))
    assert unpack_bits(bytes([0xAD, 0x40, 0xFF]), 10).tolist() == [1, 0, 1, 0, 1, 1, 0, 1, 0, 1]


def test_short_data_is_an_error() -> None:
    with pytest.raises(ValueError, match="17 bits need 3 bytes, got 2"):
        unpack_signs(bytes(2), [17])
    with pytest.raises(ValueError, match="9 bits need 2 bytes, got 1"):
        unpack_bits(bytes(1), 9)


CODE_EXAMPLE = ([3, -1, -7, 0, 5], 4, bytes([0xF3, 0x09, 0x05]))  # bitpack's docstring: low field first


def test_the_k_bit_worked_example() -> None:
    codes, bits, expected = CODE_EXAMPLE
    assert pack_codes(np.array(codes), bits) == expected
    assert unpack_codes(expected, len(codes), bits).tolist() == codes
    assert pack_codes(np.array([-1, 0, 1, -1, 1]), 2) == bytes([0b11010011, 0b00000001])  # two's complement fields


@pytest.mark.parametrize("bits", CODE_BITS)
@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 9, 1001])
def test_codes_round_trip_in_the_fewest_bytes(bits: int, count: int) -> None:
    top = (1 << (bits - 1)) - 1
    codes = np.random.default_rng(count + bits).integers(-top, top + 1, size=count)
    packed = pack_codes(codes, bits)
    assert len(packed) == codes_size(count, bits) == -(-count * bits // 8)
    assert unpack_codes(packed, count, bits).tolist() == codes.tolist()


def test_eight_bit_codes_are_plain_int8_bytes() -> None:
    codes = np.array([-127, -1, 0, 1, 127])
    assert pack_codes(codes, 8) == codes.astype(np.int8).tobytes()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pack_codes(np.array([2]), 2), r"codes must lie in \[-2, 1\] to pack at 2 bits"),
        (lambda: pack_codes(np.array([0]), 3), r"codes of 3 bits cannot be packed; the widths are \[2, 4, 8\]"),
        (lambda: unpack_codes(b"\x00", 3, 4), "3 codes of 4 bits need 2 bytes"),
    ],
)
def test_codes_that_do_not_fit_are_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
