"""The shared reader limits: element counts, names, text and regular files, each refused with the caller's error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from albsnn_compress.errors import ContainerError, DatasetError, NirError
from albsnn_compress.limits import (
    MAX_ELEMENTS,
    MAX_NAME_CHARS,
    check_name,
    check_text,
    element_count,
    regular_file_size,
)


@given(st.lists(st.integers(min_value=0, max_value=1 << 70), max_size=8))
def test_element_count_is_the_product_or_a_refusal(shape: list[int]) -> None:
    product = 1
    for dim in shape:
        product *= dim
    if product <= MAX_ELEMENTS:
        assert element_count(shape, "t", ContainerError) == product
    else:
        with pytest.raises(ContainerError, match=r"^t: shape .* holds more than 268435456 elements"):
            element_count(shape, "t", ContainerError)


@pytest.mark.parametrize("dim", [-1, True, 2.0, "3", None])
def test_element_count_refuses_what_is_not_a_dimension(dim: object) -> None:
    with pytest.raises(NirError, match=r"not a non-negative integer"):
        element_count([2, dim], "node conv1 weight", NirError)


@given(st.text(min_size=1, max_size=MAX_NAME_CHARS))
def test_a_name_is_accepted_exactly_when_it_has_no_control_character(name: str) -> None:
    bidi = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}  # Trojan Source
    controls = [c for c in name if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or ord(c) in bidi]
    if controls:
        with pytest.raises(ContainerError, match="control character"):
            check_name(name, "layer", ContainerError)
    else:
        assert check_name(name, "layer", ContainerError) == name


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "an empty name"),
        ("x" * (MAX_NAME_CHARS + 1), "257 characters, more than 256"),
        ("conv\x1b]0;pwned\x07", r"control character '\\x1b'"),
        ("a\u202eb", "control character"),
        (3, "expected text, found int"),
        (b"conv", "expected text, found bytes"),
    ],
)
def test_bad_names_are_refused_with_the_reason(value: object, message: str) -> None:
    with pytest.raises(ContainerError, match=message):
        check_name(value, "layer", ContainerError)


def test_text_has_its_own_larger_limit() -> None:
    assert check_text("é" * 1000, "metadata", ContainerError) == "é" * 1000
    with pytest.raises(ContainerError, match="more than 10"):
        check_text("x" * 11, "metadata", ContainerError, limit=10)


def test_only_regular_files_pass_with_their_size(tmp_path: Path) -> None:
    data = tmp_path / "train-images-idx3-ubyte"
    data.write_bytes(b"\0" * 100)
    assert regular_file_size(data, "an IDX file", DatasetError) == 100
    with pytest.raises(DatasetError, match="100 bytes, more than an IDX file can be"):
        regular_file_size(data, "an IDX file", DatasetError, limit=99)
    fifo = tmp_path / "images.png"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=r"not a regular file \(a folder, FIFO or device\)"):
        regular_file_size(fifo, "an image", DatasetError)
    with pytest.raises(DatasetError, match="not a regular file"):
        regular_file_size(tmp_path, "an image", DatasetError)
    with pytest.raises(DatasetError, match="no such file; pass an image"):
        regular_file_size(tmp_path / "missing.png", "an image", DatasetError)


def test_a_huge_dimension_is_refused_without_printing_it() -> None:
    with pytest.raises(ContainerError, match=r"an integer of about 6020 digits.*holds more than"):
        element_count([10**6020, 2], "t", ContainerError)
    with pytest.raises(ContainerError, match=r"shape has <an integer of about 5000 digits>, not a non-negative"):
        element_count([-(10**5000)], "t", ContainerError)
