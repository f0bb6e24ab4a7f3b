"""Hostile dataset files: each is one DatasetError line naming the file, fast, never a hang, never a big allocation.

The cases come from an enum of handcrafted bad files, built in ``tmp_path`` (the way
llama.cpp tests its reader), plus hypothesis generators over IDX headers, PNG headers and
raw gzip bytes: gzip bombs (a valid header, then gigabytes of zeros as repeated gzip
members), IDX dimensions whose product wraps a 64-bit integer, multi-GB sparse files
(``truncate``), PNG headers that declare hundreds of megapixels (a tiny PNG with its IHDR
patched and its CRC fixed), FIFOs named like every dataset file, and empty splits. Every
read runs under a deadline (``SIGALRM``): a reader that blocks on a FIFO fails the test
instead of hanging it. A subprocess reads the allocation bombs under ``RLIMIT_AS`` and
reports each refusal's peak memory (the method of ``tests/test_reader_resources.py``).
"""

from __future__ import annotations

import enum
import functools
import gzip
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albsnn_compress.data.cifar import CIFAR10_CLASSES
from albsnn_compress.data.idx import IdxLayout, read_idx
from albsnn_compress.data.imagefolder import load_image_folder
from albsnn_compress.data.registry import load_split, load_splits
from albsnn_compress.errors import DatasetError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="FIFOs, sparse files and SIGALRM as on Linux")

_DEADLINE_S = 10.0
"""Every refusal takes well under a second; a blocked read is stopped here and fails the test."""

_GIB = 1 << 30


class _Hang(BaseException):
    """Raised by the deadline's alarm: a BaseException, so no ``except Exception`` in a reader can swallow it."""


@contextmanager
def _deadline(seconds: float = _DEADLINE_S) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise _Hang(f"no answer within {seconds} s (a blocking read?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _refused(read: Callable[[], object], *fragments: str) -> str:
    """The one-line DatasetError ``read()`` raises within the deadline; it must contain each fragment."""
    start = time.perf_counter()
    with _deadline(), pytest.raises(DatasetError) as info:
        read()
    message = str(info.value)
    assert "\n" not in message, message
    assert time.perf_counter() - start < 5.0, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
        if fragment.startswith("/"):
            assert message.count(fragment) == 1, ("the file is named once, not wrapped twice", message)
    return message


# -- builders ---------------------------------------------------------------------------------------------------


def _idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


def _idx_images(count: int, rows: int = 28, cols: int = 28) -> bytes:
    return _idx_header(2051, count, rows, cols) + bytes(count * rows * cols)


def _idx_labels(count: int) -> bytes:
    return _idx_header(2049, count) + bytes(i % 10 for i in range(count))


@functools.cache
def _zeros_member(size: int = 64 << 20) -> bytes:
    """One gzip member holding ``size`` zero bytes (64 MiB in about 64 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(4 << 20)
    body = b"".join(packer.compress(chunk) for _ in range(size // len(chunk))) + packer.flush()
    return body


def _gzip_bomb(head: bytes, inflated: int) -> bytes:
    """``head`` then ``inflated`` zero bytes, gzip-compressed: a few MB that inflate to gigabytes."""
    member = _zeros_member()
    return gzip.compress(head) + member * max(1, inflated // (64 << 20))


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as stream:
        stream.write(head)
        stream.truncate(size)  # a hole: gigabytes on paper, no disk and no time
    return path


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


_FMNIST_FILES = {
    "train-images-idx3-ubyte": _idx_images(20),
    "train-labels-idx1-ubyte": _idx_labels(20),
    "t10k-images-idx3-ubyte": _idx_images(5),
    "t10k-labels-idx1-ubyte": _idx_labels(5),
}


def _fashion_root(root: Path, replace: dict[str, bytes | None] | None = None, gz: bool = False) -> Path:
    """A small valid FashionMNIST tree; ``replace`` swaps a file's bytes (``None``: leave it out)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes | None] = {**_FMNIST_FILES, **(replace or {})}
    for stem, data in files.items():
        if data is None:
            continue
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return raw


def _cifar_root(root: Path, records: dict[str, int] | None = None) -> Path:
    """A small valid CIFAR-10 binary folder (2 records per train file, 3 in the test file)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    counts = {f"data_batch_{i}.bin": 2 for i in range(1, 6)} | {"test_batch.bin": 3} | (records or {})
    for name, count in counts.items():
        (folder / name).write_bytes(bytes(count * 3073))
    return folder


@functools.cache
def _png(width: int = 32, height: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _patched_png(width: int, height: int) -> bytes:
    """A 32x32 PNG whose IHDR now declares ``width`` x ``height`` (CRC recomputed): only its header lies."""
    data = bytearray(_png())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _image_root(root: Path, train: int = 0, test: int = 1, classes: tuple[str, ...] = CIFAR10_CLASSES) -> Path:
    """An image-folder tree with every CIFAR-10 class folder and ``train``/``test`` valid images in the first."""
    for split, count in (("train", train), ("test", test)):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (root / split / classes[0] / f"{index:04d}.png").write_bytes(_png())
    return root


# -- the handcrafted cases --------------------------------------------------------------------------------------


class Case(enum.Enum):
    GZ_BOMB_AFTER_A_VALID_HEADER = enum.auto()
    GZ_BOMB_AFTER_A_ONE_IMAGE_HEADER = enum.auto()
    GZ_LABELS_BOMB = enum.auto()
    IDX_DIMS_WRAP_INT64 = enum.auto()
    IDX_DIMS_WRAP_INT64_GZ = enum.auto()
    IDX_COUNT_ABOVE_THE_SPLIT = enum.auto()
    IDX_ROWS_NOT_28 = enum.auto()
    IDX_SPARSE_3_GIB = enum.auto()
    IDX_SPARSE_3_GIB_GZ = enum.auto()
    IDX_TRAILING_BYTES = enum.auto()
    IDX_IMAGES_WHERE_LABELS_GO = enum.auto()
    IDX_ZERO_IMAGES = enum.auto()
    CIFAR_SPARSE_3_GIB = enum.auto()
    CIFAR_ONE_RECORD_TOO_MANY = enum.auto()
    CIFAR_EMPTY_TEST_FILE = enum.auto()
    PNG_DECLARES_10_GIGAPIXELS = enum.auto()
    PNG_DECLARES_400_MEGAPIXELS = enum.auto()
    PNG_DECLARES_100_MEGAPIXELS = enum.auto()
    PNG_ONE_COLUMN_WIDER = enum.auto()
    IMAGE_FILE_SPARSE_1_GIB = enum.auto()
    IMAGE_NOT_AN_IMAGE = enum.auto()
    IMAGE_TRUNCATED = enum.auto()
    FOLDER_EMPTY_TEST_SPLIT = enum.auto()
    FOLDER_VAL_SPLIT_ROUNDS_TO_ZERO = enum.auto()
    FOLDER_MORE_IMAGES_THAN_THE_SPLIT = enum.auto()


def _build(case: Case, root: Path) -> tuple[Callable[[], object], tuple[str, ...]]:
    """The read ``case`` makes under ``root`` and the fragments its refusal must name."""
    test = functools.partial(load_split, "fashion-mnist", root, "test")
    if case is Case.GZ_BOMB_AFTER_A_VALID_HEADER:
        raw = _fashion_root(root, {"t10k-images-idx3-ubyte": None})
        (raw / "t10k-images-idx3-ubyte.gz").write_bytes(_gzip_bomb(_idx_header(2051, 10000, 28, 28), 4 * _GIB))
        return test, ("t10k-images-idx3-ubyte.gz", "decompresses to more than the 7840000 bytes")
    if case is Case.GZ_BOMB_AFTER_A_ONE_IMAGE_HEADER:
        raw = _fashion_root(root, {"t10k-images-idx3-ubyte": None})
        (raw / "t10k-images-idx3-ubyte.gz").write_bytes(_gzip_bomb(_idx_header(2051, 1, 28, 28), 4 * _GIB))
        return test, ("t10k-images-idx3-ubyte.gz", "decompresses to more than the 784 bytes")
    if case is Case.GZ_LABELS_BOMB:
        raw = _fashion_root(root, {"t10k-labels-idx1-ubyte": None})
        (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(_gzip_bomb(_idx_header(2049, 5), _GIB // 2))  # under 1 MB
        return test, ("t10k-labels-idx1-ubyte.gz", "decompresses to more than the 5 bytes")
    if case is Case.IDX_DIMS_WRAP_INT64:  # 2^32-1 cubed: np.prod in int64 wraps to a small number
        _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_header(2051, 2**32 - 1, 2**32 - 1, 2**32 - 1)})
        return test, ("t10k-images-idx3-ubyte", "items of shape [4294967295, 4294967295]")
    if case is Case.IDX_DIMS_WRAP_INT64_GZ:
        header = _idx_header(2051, 2**21, 2**21, 2**22)  # 2^64 elements: int64's product is 0
        _fashion_root(root, {"t10k-images-idx3-ubyte": header}, gz=True)
        return test, ("t10k-images-idx3-ubyte.gz", "items of shape [2097152, 4194304]")
    if case is Case.IDX_COUNT_ABOVE_THE_SPLIT:
        _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_header(2051, 2**31, 28, 28)})
        return test, ("t10k-images-idx3-ubyte", "declares 2147483648 items", "at most 10000")
    if case is Case.IDX_ROWS_NOT_28:
        _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_images(5, 32, 32)})
        return test, ("t10k-images-idx3-ubyte", "items of shape [32, 32]", "[28, 28]")
    if case is Case.IDX_SPARSE_3_GIB:
        raw = _fashion_root(root, {"t10k-images-idx3-ubyte": None})
        _sparse(raw / "t10k-images-idx3-ubyte", 3 * _GIB, _idx_header(2051, 10000, 28, 28))
        return test, ("t10k-images-idx3-ubyte", "3221225472 bytes, more than", "(7840016 bytes)")
    if case is Case.IDX_SPARSE_3_GIB_GZ:
        raw = _fashion_root(root, {"t10k-images-idx3-ubyte": None})
        _sparse(raw / "t10k-images-idx3-ubyte.gz", 3 * _GIB, gzip.compress(_idx_header(2051, 10000, 28, 28)))
        return test, ("t10k-images-idx3-ubyte.gz", "3221225472 bytes, more than")
    if case is Case.IDX_TRAILING_BYTES:
        _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_images(5) + b"polyglot"})
        return test, ("t10k-images-idx3-ubyte", "header announces 3920 bytes of data, file has 3928")
    if case is Case.IDX_IMAGES_WHERE_LABELS_GO:
        _fashion_root(root, {"t10k-labels-idx1-ubyte": _idx_images(5)})
        return test, ("t10k-labels-idx1-ubyte", "magic number 2051, expected 2049")
    if case is Case.IDX_ZERO_IMAGES:
        _fashion_root(root, {"t10k-images-idx3-ubyte": _idx_images(0), "t10k-labels-idx1-ubyte": _idx_labels(0)})
        return test, ("FashionMNIST test split in", str(root), "holds 0 images")
    cifar_test = functools.partial(load_split, "cifar10", root, "test")
    if case is Case.CIFAR_SPARSE_3_GIB:
        folder = _cifar_root(root)
        _sparse(folder / "test_batch.bin", 3073 * 1_000_000)  # a whole number of records: only its size is wrong
        return cifar_test, ("test_batch.bin", "3073000000 bytes, more than", "(30730000 bytes)")
    if case is Case.CIFAR_ONE_RECORD_TOO_MANY:
        _cifar_root(root, {"data_batch_4.bin": 10001})
        return functools.partial(load_splits, "cifar10", root, ("train",)), ("data_batch_4.bin", "(30730000 bytes)")
    if case is Case.CIFAR_EMPTY_TEST_FILE:
        _cifar_root(root, {"test_batch.bin": 0})
        return cifar_test, ("cifar10 test split in", "test_batch.bin holds 0 images")
    png = root / "test" / CIFAR10_CLASSES[0] / "0000.png"
    sizes = {
        Case.PNG_DECLARES_10_GIGAPIXELS: (100_000, 100_000),
        Case.PNG_DECLARES_400_MEGAPIXELS: (20_000, 20_000),
        Case.PNG_DECLARES_100_MEGAPIXELS: (10_000, 10_000),
        Case.PNG_ONE_COLUMN_WIDER: (33, 32),
    }
    if case in sizes:
        _image_root(root)
        png.write_bytes(_patched_png(*sizes[case]))
        return cifar_test, (str(png),)
    if case is Case.IMAGE_FILE_SPARSE_1_GIB:
        _image_root(root)
        _sparse(png, _GIB, _png())
        return cifar_test, (str(png), "1073741824 bytes, more than an image file")
    if case is Case.IMAGE_NOT_AN_IMAGE:
        _image_root(root)
        png.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n" + bytes(100))  # EPS would start Ghostscript: not a decoder used
        return cifar_test, (str(png), "cannot read image")
    if case is Case.IMAGE_TRUNCATED:
        _image_root(root)
        png.write_bytes(_png()[:60])
        return cifar_test, (str(png), "cannot read image")
    if case is Case.FOLDER_EMPTY_TEST_SPLIT:
        _image_root(root, test=0)
        return cifar_test, ("the test split in", str(root / "test"), "holds 0 images")
    if case is Case.FOLDER_VAL_SPLIT_ROUNDS_TO_ZERO:
        _image_root(root, train=5)
        splits = functools.partial(load_splits, "cifar10", root)
        return splits, ("the val split in", str(root), "the 5 training images", "at least 6 images")
    if case is Case.FOLDER_MORE_IMAGES_THAN_THE_SPLIT:
        _image_root(root, test=0)
        for index in range(10_001):  # empty files: the listing refuses before any is opened
            (root / "test" / CIFAR10_CLASSES[index % 10] / f"{index:05d}.png").touch()
        return cifar_test, (str(root / "test"), "more than 10000 images")
    raise AssertionError(f"no builder for {case}")


@pytest.mark.parametrize("case", list(Case), ids=lambda case: case.name.lower())
def test_hostile_dataset_is_one_dataset_error(tmp_path: Path, case: Case) -> None:
    read, fragments = _build(case, tmp_path)
    _refused(read, *fragments)


# -- FIFOs named like every file a reader opens -----------------------------------------------------------------

_FIFO_CASES: dict[str, tuple[str, tuple[str, ...], Callable[[Path], Path]]] = {}
for _stem in _FMNIST_FILES:
    for _suffix in ("", ".gz"):
        _FIFO_CASES[f"fashion-mnist/{_stem}{_suffix}"] = (
            "fashion-mnist",
            ("train",) if _stem.startswith("train") else ("test",),
            lambda root, stem=_stem, suffix=_suffix: _fifo(
                _fashion_root(root, {stem: None}, gz=suffix == ".gz") / f"{stem}{suffix}"
            ),
        )
for _name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    _FIFO_CASES[f"cifar10/{_name}"] = (
        "cifar10",
        ("test",) if _name.startswith("test") else ("train",),
        lambda root, name=_name: _fifo(_cifar_without(root, name)),
    )
for _name in ("train.bin", "test.bin"):
    _FIFO_CASES[f"cifar100/{_name}"] = (
        "cifar100",
        (_name.split(".")[0],),
        lambda root, name=_name: _fifo(root / "cifar-100-binary" / name),
    )
for _suffix in (".png", ".jpg", ".jpeg", ".bmp"):
    _FIFO_CASES[f"image-folder/0001{_suffix}"] = (
        "cifar10",
        ("test",),
        lambda root, suffix=_suffix: _fifo(_image_root(root) / "test" / CIFAR10_CLASSES[3] / f"0001{suffix}"),
    )


def _cifar_without(root: Path, name: str) -> Path:
    """A valid CIFAR-10 folder without ``name``: where that file would be."""
    folder = _cifar_root(root)
    (folder / name).unlink()
    return folder / name


@pytest.mark.parametrize("case", sorted(_FIFO_CASES))
def test_a_fifo_named_like_a_dataset_file_is_refused_not_waited_on(tmp_path: Path, case: str) -> None:
    dataset, splits, make = _FIFO_CASES[case]
    fifo = make(tmp_path)
    if dataset == "cifar100":  # the other file of the pair is valid
        other = "test.bin" if fifo.name == "train.bin" else "train.bin"
        (fifo.parent / other).write_bytes(bytes(2 * 3074))
    _refused(lambda: load_splits(dataset, tmp_path, splits), str(fifo), "not a regular file")


def test_a_fifo_named_classes_txt_is_refused(tmp_path: Path) -> None:
    _image_root(tmp_path, classes=("cat", "dog"))
    fifo = _fifo(tmp_path / "classes.txt")
    _refused(lambda: load_image_folder(tmp_path, "test", (3, 32, 32)), str(fifo), "not a regular file")


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    raw = _fashion_root(tmp_path, {"t10k-images-idx3-ubyte": None})
    (raw / "t10k-images-idx3-ubyte").symlink_to("/dev/zero")
    _refused(lambda: load_split("fashion-mnist", tmp_path, "test"), "t10k-images-idx3-ubyte", "not a regular file")


# -- legitimate inputs still read --------------------------------------------------------------------------------


def test_small_valid_copies_of_each_format_still_read(tmp_path: Path) -> None:
    """A trimmed copy (fewer images than the official split) is legitimate: the bounds are maxima."""
    _fashion_root(tmp_path / "fm")
    _fashion_root(tmp_path / "fmgz", gz=True)
    for root in (tmp_path / "fm", tmp_path / "fmgz"):
        splits = load_splits("fashion-mnist", root)
        assert {name: len(split) for name, split in splits.items()} == {"train": 18, "val": 2, "test": 5}
    _cifar_root(tmp_path / "c10")
    assert len(load_split("cifar10", tmp_path / "c10", "test")) == 3
    _image_root(tmp_path / "img", train=6, test=2)
    assert {k: len(v) for k, v in load_splits("cifar10", tmp_path / "img").items()} == {"train": 5, "val": 1, "test": 2}


def test_gzip_with_exactly_the_declared_bytes_in_two_members_reads(tmp_path: Path) -> None:
    """Concatenated gzip members are one stream (gzip's rule): the bound is on the bytes, not the members."""
    data = _idx_images(3, 4, 4)
    path = tmp_path / "split-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:20]) + gzip.compress(data[20:]))
    assert read_idx(path).shape == (3, 4, 4)


# -- generators ---------------------------------------------------------------------------------------------------

_U32 = st.integers(0, 2**32 - 1)
_SMALL = st.integers(0, 12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    magic=st.sampled_from([2049, 2051, 2050, 0, 2**32 - 1]),
    dims=st.lists(st.one_of(_SMALL, _U32), min_size=3, max_size=3),
    extra=st.integers(-20, 20),
    compressed=st.booleans(),
    layout=st.booleans(),
)
def test_generated_idx_headers(
    tmp_path: Path, magic: int, dims: list[int], extra: int, compressed: bool, layout: bool
) -> None:
    """Any header, any payload size near the declared one: an array of exactly the declared shape, or a refusal."""
    rank = 1 if magic == 2049 else 3
    shape = dims[:rank]
    declared = int(np.prod(shape, dtype=object))
    payload = bytes(max(0, min(declared, 4096) + extra)) if declared <= 4096 else bytes(64)
    data = _idx_header(magic, *shape) + payload
    path = tmp_path / f"gen-{os.getpid()}-{time.perf_counter_ns()}-ubyte{'.gz' if compressed else ''}"
    path.write_bytes(gzip.compress(data) if compressed else data)
    bounds = IdxLayout(magic, tuple(shape[1:]), 100, "generated items") if layout and magic in (2049, 2051) else None
    try:
        with _deadline():
            array = read_idx(path, bounds)
    except DatasetError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert magic in (2049, 2051) and list(array.shape) == shape and len(payload) == declared
    finally:
        path.unlink()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.one_of(st.integers(1, 64), _U32), height=st.one_of(st.integers(1, 64), _U32))
def test_generated_png_dimensions(tmp_path: Path, width: int, height: int) -> None:
    """Any declared size: read when it is 32x32, else refused from the header, quickly, whatever the claim."""
    root = tmp_path / f"png-{time.perf_counter_ns()}"
    _image_root(root, test=0, classes=("a",))
    path = root / "test" / "a" / "0000.png"
    path.write_bytes(_patched_png(width, height))
    try:
        with _deadline():
            data = load_image_folder(root, "test", (3, 32, 32), ("a",))
    except DatasetError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        assert (width, height) != (32, 32)
    else:
        assert (width, height) == (32, 32) and data.images.shape == (1, 3, 32, 32)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.binary(max_size=64),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 199), st.integers(1, 255)), max_size=4),
)
def test_generated_damaged_gzip_idx(tmp_path: Path, prefix: bytes, cut: int, flips: list[tuple[int, int]]) -> None:
    """A valid .gz IDX file cut short, bit-flipped or prefixed with junk: the array or a DatasetError, nothing else."""
    packed = bytearray(gzip.compress(_idx_images(2, 5, 5)))
    for offset, mask in flips:
        packed[offset % len(packed)] ^= mask
    data = prefix + bytes(packed[: max(1, len(packed) - cut)] if cut < len(packed) else packed)
    path = tmp_path / f"fuzz-{time.perf_counter_ns()}-idx3-ubyte.gz"
    path.write_bytes(data)
    try:
        with _deadline():
            read_idx(path, IdxLayout(2051, (5, 5), 10, "fuzzed images"))
    except DatasetError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    finally:
        path.unlink()


# -- memory: the bombs under an address-space cap ---------------------------------------------------------------

_HARNESS = textwrap.dedent("""
    import json, resource, sys
    from albsnn_compress.data.registry import load_splits
    from albsnn_compress.errors import DatasetError

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    cases, warm, budget = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    load_splits("fashion-mnist", warm)  # imports and first-call costs happen before the cap
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + budget, resource.RLIM_INFINITY))
    results = []
    for dataset, root, splits in cases:
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the peak (VmHWM) restarts from now
        try:
            load_splits(dataset, root, tuple(splits))
            outcome = "read"
        except DatasetError as exc:
            outcome = "refused: " + str(exc)
        except BaseException as exc:  # what the test must never see
            outcome = f"escaped {type(exc).__name__}: {exc}"[:300]
        results.append({"outcome": outcome, "added": status("VmHWM") - before})
    print(json.dumps(results))
""")

_BUDGET = 2 * _GIB
"""Address space allowed beyond the warmed-up process: the old readers allocated 1 to 4 GiB on these files."""

_PEAK_ALLOWED = 64 << 20
"""Peak memory a refusal may add: the largest buffer a FashionMNIST test header can justify is 7.8 MB."""


@pytest.mark.subprocess
def test_bombs_are_refused_under_a_memory_cap_with_a_small_peak(tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    _fashion_root(warm)
    cases = []
    for case in (
        Case.GZ_BOMB_AFTER_A_VALID_HEADER,
        Case.GZ_BOMB_AFTER_A_ONE_IMAGE_HEADER,
        Case.IDX_SPARSE_3_GIB,
        Case.IDX_DIMS_WRAP_INT64,
        Case.CIFAR_SPARSE_3_GIB,
        Case.PNG_DECLARES_10_GIGAPIXELS,
        Case.PNG_DECLARES_100_MEGAPIXELS,
        Case.IMAGE_FILE_SPARSE_1_GIB,
    ):
        root = tmp_path / case.name.lower()
        _build(case, root)
        dataset = "fashion-mnist" if (root / "FashionMNIST").exists() else "cifar10"
        cases.append((dataset, str(root), ["test"]))
    done = subprocess.run(
        [sys.executable, "-c", _HARNESS, json.dumps(cases), str(warm), str(_BUDGET)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (_, root, _), result in zip(cases, results):
        assert result["outcome"].startswith("refused: "), (root, result)
        assert result["added"] <= _PEAK_ALLOWED, (root, result)


# -- through the command line --------------------------------------------------------------------------------------


def _fashion_checkpoint(path: Path) -> Path:
    from albsnn_compress.checkpoint import save_checkpoint
    from albsnn_compress.snn.spec import SpikingNet

    spec = {"input": {"shape": [1, 28, 28]}, "num_classes": 10, "layers": [{"type": "flatten"}, {"type": "linear"}]}
    spec["layers"][1]["out_features"] = 10
    save_checkpoint(path, SpikingNet(spec), {"dataset": "fashion-mnist"})
    return path


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        (Case.IDX_ZERO_IMAGES, ("FashionMNIST test split in", "holds 0 images")),
        (Case.GZ_BOMB_AFTER_A_ONE_IMAGE_HEADER, ("decompresses to more than the 784 bytes",)),
        (Case.IDX_SPARSE_3_GIB, ("3221225472 bytes, more than",)),
    ],
    ids=lambda value: value.name.lower() if isinstance(value, Case) else "",
)
def test_eval_refuses_a_hostile_split_in_one_line(tmp_path: Path, case: Case, fragments: tuple[str, ...]) -> None:
    """`eval` printed '0.00 % (0 images)' for an empty test split; now it is a one-line refusal with exit 2."""
    from tests.clihelp import run_cli

    model = _fashion_checkpoint(tmp_path / "model.pt")
    _build(case, tmp_path / "data")
    with _deadline():
        result = run_cli(["eval", str(model), "--data-root", str(tmp_path / "data")], expected_exit=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments), result.stderr
    assert "top-1 accuracy" not in result.stdout
