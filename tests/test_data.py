"""Datasets: the IDX reader on the real FashionMNIST files, bad files, splits, batching."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn_compress.data import BatchLoader, load_split, load_splits
from albsnn_compress.data.cifar import load_cifar_binary
from albsnn_compress.data.idx import read_idx
from albsnn_compress.data.imagefolder import load_image_folder
from albsnn_compress.errors import DatasetError


def test_fashion_mnist_real_files(datasets_root: Path) -> None:
    splits = load_splits("fashion-mnist", datasets_root)
    assert splits["test"].images.shape == (10000, 1, 28, 28)
    assert splits["test"].labels.bincount().tolist() == [1000] * 10
    assert len(splits["train"]) + len(splits["val"]) == 60000
    assert len(splits["val"]) == 6000


def test_val_split_is_fixed_and_disjoint() -> None:
    first = load_splits("digits", None, ("train", "val"))
    second = load_splits("digits", None, ("train", "val"))
    assert torch.equal(first["val"].images, second["val"].images)
    assert len(first["train"]) + len(first["val"]) + len(load_split("digits", None, "test")) == 1797


def test_a_larger_val_share_holds_every_image_of_a_smaller_one() -> None:
    small = load_splits("digits", None, ("train", "val"))
    large = load_splits("digits", None, ("train", "val"), val_share=0.3)
    assert len(large["val"]) == round(0.3 * (len(small["train"]) + len(small["val"])))
    assert len(large["train"]) + len(large["val"]) == len(small["train"]) + len(small["val"])
    small_rows = {row.numpy().tobytes() for row in small["val"].images}
    large_rows = {row.numpy().tobytes() for row in large["val"].images}
    train_rows = {row.numpy().tobytes() for row in large["train"].images}
    assert small_rows <= large_rows and not large_rows & train_rows


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.1, "0.2", True, float("nan")])
def test_a_val_share_outside_zero_to_one_is_refused(share: object) -> None:
    with pytest.raises(DatasetError, match="strictly between 0 and 1"):
        load_splits("digits", None, ("val",), val_share=share)  # type: ignore[arg-type]


def _idx_images(count: int, rows: int, cols: int, payload: bytes | None = None) -> bytes:
    body = payload if payload is not None else bytes(count * rows * cols)
    return struct.pack(">IIII", 2051, count, rows, cols) + body


def test_idx_reader_checks_magic_and_size(tmp_path: Path) -> None:
    good = tmp_path / "good-idx3-ubyte.gz"
    with gzip.open(good, "wb") as stream:
        stream.write(_idx_images(2, 3, 3, bytes(range(18))))
    assert read_idx(good).shape == (2, 3, 3)
    truncated = tmp_path / "short"
    truncated.write_bytes(_idx_images(2, 3, 3, bytes(10)))
    with pytest.raises(DatasetError, match="header announces 18 bytes of data, file has 10"):
        read_idx(truncated)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(struct.pack(">I", 1234) + bytes(20))
    with pytest.raises(DatasetError, match="magic number 1234"):
        read_idx(wrong)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="too short"):
        read_idx(tiny)
    bad_gzip = tmp_path / "bad.gz"
    bad_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"bad\.gz: is not a readable gzip file \(Not a gzipped file"):
        read_idx(bad_gzip)


def _damaged_gzip(data: bytes) -> bytes:
    """A gzip file whose deflate stream is damaged (a stored block's length check broken): zlib.error on reading."""
    packed = bytearray(gzip.compress(data, compresslevel=0))  # level 0: stored blocks, LEN then ~LEN after the header
    packed[10 + 1 + 2] ^= 0xFF  # first byte of NLEN: no longer the complement of LEN
    return bytes(packed)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            _damaged_gzip,
            r"x-idx3-ubyte\.gz: is not a readable gzip file \(Error -3 while decompressing data: invalid stored block",
        ),
        (
            lambda data: gzip.compress(data)[:-12],
            r"x-idx3-ubyte\.gz: the gzip data ends early \(a truncated download\?\)",
        ),
        (
            lambda data: gzip.compress(data)[:-8] + b"\0\0\0\0" + gzip.compress(data)[-4:],
            r"is not a readable gzip file \(CRC check failed",
        ),
    ],
    ids=["damaged-deflate", "truncated", "bad-crc"],
)
def test_damaged_gzip_is_one_dataset_error(tmp_path: Path, damage, message: str) -> None:
    """zlib.error escaped as a traceback; now every gzip failure names the file and says to download it again."""
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(damage(_idx_images(4, 8, 8, bytes(range(256)))))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path)
    assert "download the FashionMNIST files again" in str(info.value) and "\n" not in str(info.value)


def test_unreadable_idx_file(tmp_path: Path) -> None:
    """A folder named like the file is refused by what it is, before anything opens it."""
    with pytest.raises(DatasetError, match=r"not a regular file \(a folder, FIFO or device\); pass an IDX file"):
        read_idx(tmp_path)
    with pytest.raises(DatasetError, match=r"missing-idx3-ubyte: no such file; pass an IDX file"):
        read_idx(tmp_path / "missing-idx3-ubyte")


def test_missing_dataset_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="FashionMNIST/raw"):
        load_split("fashion-mnist", tmp_path, "test")
    with pytest.raises(DatasetError, match="needs --data-root"):
        load_split("cifar10", None, "test")
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_split("mnist", tmp_path, "test")
    with pytest.raises(DatasetError, match="expected the official binary folder"):
        load_split("cifar100", tmp_path, "test")


def test_cifar10_binary_reader(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    records = np.concatenate(
        [np.array([[7]], dtype=np.uint8).repeat(3, 0), rng.integers(0, 255, (3, 3072), dtype=np.uint8)], 1
    )
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    data = load_cifar_binary(tmp_path, "cifar10", "test", 10)
    assert data.images.shape == (3, 3, 32, 32) and data.labels.tolist() == [7, 7, 7]
    assert torch.equal(data.images[0].reshape(-1), torch.from_numpy(records[0, 1:]))
    (folder / "test_batch.bin").write_bytes(records.tobytes()[:-1])
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        load_cifar_binary(tmp_path, "cifar10", "test", 10)


def test_image_folder_reader(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    for label, name in enumerate(("cat", "dog")):
        folder = tmp_path / "test" / name
        folder.mkdir(parents=True)
        pil.fromarray(np.full((4, 4, 3), 40 * (label + 1), dtype=np.uint8)).save(folder / "0000.png")
    data = load_image_folder(tmp_path, "test", (3, 4, 4), ("cat", "dog"))
    assert data.labels.tolist() == [0, 1] and int(data.images[1, 0, 0, 0]) == 80
    with pytest.raises(DatasetError, match="expected 8x8"):
        load_image_folder(tmp_path, "test", (3, 8, 8), ("cat", "dog"))


def test_batches_shard_the_same_global_order() -> None:
    data = load_split("digits", None, "train")
    single = [y for _, y in BatchLoader(data, 8, shuffle=True, seed=3, drop_last=True)]
    shards = [list(BatchLoader(data, 4, shuffle=True, seed=3, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    for step, labels in enumerate(single[:10]):
        merged = torch.cat([shards[0][step][1], shards[1][step][1]])
        assert sorted(merged.tolist()) == sorted(labels.tolist())


def test_evaluation_shards_cover_every_sample_once() -> None:
    data = load_split("digits", None, "val")
    seen = torch.cat([y for r in range(3) for _, y in BatchLoader(data, 16, rank=r, world_size=3)])
    assert seen.numel() == len(data)
