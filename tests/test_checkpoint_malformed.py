"""Hostile and damaged ``model.pt`` files: each must raise CheckpointError naming the file and the problem, quickly.

Mirrors ``tests/test_container_malformed.py``: handcrafted cases from one enum (the
way llama.cpp tests GGUF), then hypothesis properties: random byte flips and
truncations of a valid checkpoint, and random hostile values put into a valid
payload and saved again. Every outcome is a CheckpointError or a successful
read, never another exception, a warning or an unpickled object.
"""

from __future__ import annotations

import enum
import gzip
import io
import pickle
import random
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albsnn_compress.checkpoint import read_checkpoint, save_checkpoint
from albsnn_compress.errors import CheckpointError
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet

GOLDEN = Path(__file__).resolve().parent / "golden"
CONTAINER = (GOLDEN / "conv_mixed.albsnn").read_bytes()
TINY_SPEC = {
    "name": "tiny",
    "input": {"shape": [1, 4, 4]},
    "num_classes": 2,
    "layers": [
        {"type": "conv", "out_channels": 2},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 2, "kernel_size": 1},
        {"type": "bn"},
        {"type": "gap"},
    ],
}


def _bytes_of(payload: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


@cache
def _good(tiny: bool = False) -> bytes:
    """A valid checkpoint: digits-small (binarized conv2), or a 2-channel network for the fuzz tests."""
    torch.manual_seed(0)
    model = SpikingNet(TINY_SPEC if tiny else make_preset("digits-small", [1, 8, 8], 10, [0.3], [0.37]), 2)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model.pt"
        save_checkpoint(target, model.eval(), {"dataset": "digits"})
        return target.read_bytes()


def _payload(tiny: bool = False) -> dict[str, Any]:
    return torch.load(io.BytesIO(_good(tiny)), weights_only=True)


def _edited(edit: Callable[[dict[str, Any]], None], tiny: bool = False) -> bytes:
    payload = _payload(tiny)
    edit(payload)
    return _bytes_of(payload)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``payload[a][b]...`` (keys split on '/', digits index lists)."""

    def edit(payload: dict[str, Any]) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split("/")]
        target: Any = payload
        for key in parents:
            if not isinstance(target, (dict, list)):  # an earlier edit put a scalar or a tensor here
                raise TypeError(f"cannot index {type(target).__name__}")
            target = target[key]
        if not isinstance(target, (dict, list)):
            raise TypeError(f"cannot index {type(target).__name__}")
        target[last] = value

    return edit


def _set_value(
    key: str, index: int, value: float, dtype: torch.dtype | None = None
) -> Callable[[dict[str, Any]], None]:
    """An edit that writes one element of a state-dict tensor (optionally converting the tensor first)."""

    def edit(payload: dict[str, Any]) -> None:
        tensor = payload["state_dict"][key].clone()
        if dtype is not None:
            tensor = tensor.to(dtype)
        tensor.view(-1)[index] = value
        payload["state_dict"][key] = tensor

    return edit


def _compressed() -> bytes:
    """The good checkpoint re-zipped with deflate: torch.load reads it, and 5 KB could hold gigabytes of zeros."""
    source = zipfile.ZipFile(io.BytesIO(_good()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


def _torchscript() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    return buffer.getvalue()


def _pickled_module() -> bytes:
    torch.manual_seed(0)
    return _bytes_of(SpikingNet(TINY_SPEC, 1))


def _unknown_bytes() -> bytes:
    data = bytearray(range(256))
    random.Random(0).shuffle(data)
    return b"\xfe\xff" + bytes(data)


class Case(enum.Enum):
    """One kind of malformed checkpoint; the value is the message the reader must give."""

    EMPTY = r"is an empty file \(0 bytes\), not a PyTorch checkpoint \(a zip archive expected\)"
    TEXT = r"is a text file, not a PyTorch checkpoint \(a zip archive expected\)"
    UNKNOWN_BYTES = r"is a file of unknown type \(it starts with fe ff .*\), not a PyTorch checkpoint"
    RAW_PICKLE = r"is a raw pickle .*, not a checkpoint \(a zip archive expected\); pickles are never unpickled"
    GZIP = r"is a gzip-compressed file, not a PyTorch checkpoint"
    CONTAINER = r"is an \.albsnn container, not a model\.pt checkpoint; read it with read_container"
    DAMAGED_CONTAINER = r"starts like an \.albsnn container whose magic is damaged \(89 41 4c 42 53 4e 4e 0d 0a.*CR LF"
    TRUNCATED_ZIP = r"is a truncated or damaged zip archive, not a readable PyTorch checkpoint"
    ZIP_HEAD_ONLY = r"is a truncated or damaged zip archive"
    COMPRESSED_ZIP = r"member '.*' is compressed; torch\.save writes uncompressed archives"
    TORCHSCRIPT = r"is a TorchScript archive, not an albsnn checkpoint"
    PICKLED_MODULE = r"holds pickled Python objects \(e\.g\. a whole nn\.Module\), which are never unpickled"
    NOT_A_DICT = r"format tag is 'list', expected 'albsnn-checkpoint'"
    FORMAT_TAG = r"format tag is 'something-else'"
    VERSION = r"checkpoint version 99 is not supported \(expected 1\)"
    TIMESTEPS_BOOL = r"'timesteps' must be an integer >= 1, got True"
    TIMESTEPS_FLOAT = r"'timesteps' must be an integer >= 1, got 2\.0"
    TIMESTEPS_HUGE = r"'timesteps': 5000 time steps, at most 4096 allowed"
    SPEC_NOT_DICT = r"bad architecture spec: architecture spec must be a JSON object, got str"
    SPEC_NAN_STRING = r"bad architecture spec: spec neuron v_threshold must be a finite number, got 'nan'"
    SPEC_NAN_FLOAT = r"bad architecture spec: spec input std\[0\] must be a finite number > 0, got nan"
    SPEC_INF_FLOAT = r"bad architecture spec: spec neuron v_reset must be a finite number, got inf"
    SPEC_BOOL_INT = r"bad architecture spec: layer conv1 out_channels must be an integer >= 1, got True"
    SPEC_TENSOR_SURROGATE = (
        r"bad architecture spec: spec neuron surrogate must be a surrogate name or \{'name': \.\.\., \.\.\.\}, "
        r"got a Tensor"
    )
    SPEC_HUGE_LAYERS = r"'spec': the architecture has \d+ parameters, more than a \d+-byte checkpoint can hold"
    SPEC_HUGE_ACTIVATION = r"'spec': a layer outputs \d+ elements per sample \(at most 4194304\)"
    SPEC_HUGE_FORWARD = (
        r"'timesteps': a forward pass of one image at T=4096 needs \d+\.\d GiB of activations \(at most 1\.0 GiB\)"
    )
    STATE_NOT_DICT = r"'state_dict' must be a dict of tensors, got list"
    STATE_MISSING = r"state_dict does not match the architecture \(missing \['layers\.conv2\.weight'\]"
    STATE_EXTRA = r"state_dict does not match the architecture \(missing \[\], unexpected \['layers\.extra'\]\)"
    STATE_SHAPE = r"state_dict\['layers\.conv2\.weight'\] has shape \[3\], the architecture needs \[32, 16, 3, 3\]"
    STATE_DTYPE = r"state_dict\['layers\.conv2\.weight'\] has dtype torch\.uint8"
    STATE_NOT_TENSOR = r"state_dict\['layers\.conv2\.weight'\] must be a dense tensor, got str"
    STATE_SPARSE = r"state_dict\['layers\.bn1\.bias'\] must be a dense tensor, got Tensor"
    NAN_WEIGHT = (
        r"state_dict\['layers\.conv1\.weight'\] must hold finite values, found nan \(a diverged training run\?\)"
    )
    INF_BN_MEAN = r"state_dict\['layers\.bn2\.running_mean'\] must hold finite values, found inf"
    NEGATIVE_VARIANCE = (
        r"state_dict\['layers\.bn1\.running_var'\] is a batch-norm variance and must be finite and >= 0, found -2\.0"
    )
    FLOAT64_OVERFLOW = r"state_dict\['layers\.conv3\.weight'\] must hold finite values, found -inf"
    FLOAT16_INF = r"state_dict\['layers\.bn3\.weight'\] must hold finite values, found inf"
    BINARIZED_NOT_A_LAYER = r"'binarized' must list binarizable layer names"
    PRECISIONS_BAD_BITS = r"'precisions' must map .* to bits \['2', '4', '8'\], got \{'layers\.conv3': 3\}"
    PRECISIONS_ALSO_BINARY = r"'precisions' must map binarizable layer names .* that are not binarized"
    PRECISIONS_NOT_DICT = r"'precisions' must map .*, got \['layers\.conv3'\]"
    PRECISIONS_BOOL_BITS = r"'precisions' must map .*, got \{'layers\.conv3': True\}"
    METADATA_NOT_DICT = r"'metadata' must be a dict, got list"


BUILDERS: dict[Case, Callable[[], bytes]] = {
    Case.EMPTY: lambda: b"",
    Case.TEXT: lambda: b"weights: see the attached notes\n",
    Case.UNKNOWN_BYTES: _unknown_bytes,
    Case.RAW_PICKLE: lambda: pickle.dumps({"format": "albsnn-checkpoint"}),
    Case.GZIP: lambda: gzip.compress(_good()),
    Case.CONTAINER: lambda: CONTAINER,
    Case.DAMAGED_CONTAINER: lambda: CONTAINER[:7] + b"\r\n" + CONTAINER[8:],
    Case.TRUNCATED_ZIP: lambda: _good()[: len(_good()) // 2],
    Case.ZIP_HEAD_ONLY: lambda: _good()[:10],
    Case.COMPRESSED_ZIP: _compressed,
    Case.TORCHSCRIPT: _torchscript,
    Case.PICKLED_MODULE: _pickled_module,
    Case.NOT_A_DICT: lambda: _bytes_of([1, 2, 3]),
    Case.FORMAT_TAG: lambda: _edited(_set("format", "something-else")),
    Case.VERSION: lambda: _edited(_set("version", 99)),
    Case.TIMESTEPS_BOOL: lambda: _edited(_set("timesteps", True)),
    Case.TIMESTEPS_FLOAT: lambda: _edited(_set("timesteps", 2.0)),
    Case.TIMESTEPS_HUGE: lambda: _edited(_set("timesteps", 5000)),
    Case.SPEC_NOT_DICT: lambda: _edited(_set("spec", "digits-small")),
    Case.SPEC_NAN_STRING: lambda: _edited(_set("spec/neuron/v_threshold", "nan")),
    Case.SPEC_NAN_FLOAT: lambda: _edited(_set("spec/input/std/0", float("nan"))),
    Case.SPEC_INF_FLOAT: lambda: _edited(_set("spec/neuron/v_reset", float("inf"))),
    Case.SPEC_BOOL_INT: lambda: _edited(_set("spec/layers/0/out_channels", True)),
    # found by test_random_payload_edits: a tensor where the surrogate name goes raised a bare ValueError
    Case.SPEC_TENSOR_SURROGATE: lambda: _edited(_set("spec/neuron/surrogate", torch.zeros(1, 1, 3, 3))),
    # The 2.6 KB file that made eval allocate 2.1 GB: a spec claiming huge layers, refused before anything is built.
    Case.SPEC_HUGE_LAYERS: lambda: _bytes_of(
        {
            "format": "albsnn-checkpoint",
            "version": 1,
            "timesteps": 1,
            "binarized": [],
            "state_dict": {},
            "metadata": {},
            "spec": {
                "input": {"shape": [1, 28, 28]},
                "num_classes": 10,
                "layers": [
                    {"type": "flatten"},
                    {"type": "linear", "out_features": 1 << 18},
                    {"type": "linear", "out_features": 10},
                ],
            },
        }
    ),
    Case.SPEC_HUGE_ACTIVATION: lambda: _edited(_set("spec/input/shape", [1, 4096, 4096])),
    Case.SPEC_HUGE_FORWARD: lambda: _edited(
        lambda p: (_set("spec/input/shape", [1, 256, 256])(p), p.update(timesteps=4096))
    ),
    Case.STATE_NOT_DICT: lambda: _edited(_set("state_dict", []), tiny=True),  # small enough to fit the file without it
    Case.STATE_MISSING: lambda: _edited(lambda p: p["state_dict"].pop("layers.conv2.weight")),
    Case.STATE_EXTRA: lambda: _edited(_set("state_dict/layers.extra", torch.zeros(1))),
    Case.STATE_SHAPE: lambda: _edited(_set("state_dict/layers.conv2.weight", torch.zeros(3))),
    Case.STATE_DTYPE: lambda: _edited(
        _set("state_dict/layers.conv2.weight", torch.zeros(32, 16, 3, 3, dtype=torch.uint8))
    ),
    Case.STATE_NOT_TENSOR: lambda: _edited(_set("state_dict/layers.conv2.weight", "text")),
    Case.STATE_SPARSE: lambda: _edited(_set("state_dict/layers.bn1.bias", torch.zeros(16).to_sparse())),
    Case.NAN_WEIGHT: lambda: _edited(_set_value("layers.conv1.weight", 5, float("nan"))),
    Case.INF_BN_MEAN: lambda: _edited(_set_value("layers.bn2.running_mean", 3, float("inf"))),
    Case.NEGATIVE_VARIANCE: lambda: _edited(_set_value("layers.bn1.running_var", 0, -2.0)),
    Case.FLOAT64_OVERFLOW: lambda: _edited(_set_value("layers.conv3.weight", 9, -1e300, torch.float64)),
    Case.FLOAT16_INF: lambda: _edited(_set_value("layers.bn3.weight", 1, float("inf"), torch.float16)),
    Case.BINARIZED_NOT_A_LAYER: lambda: _edited(_set("binarized", ["layers.bn1"])),
    Case.PRECISIONS_BAD_BITS: lambda: _edited(_set("precisions", {"layers.conv3": 3})),
    Case.PRECISIONS_ALSO_BINARY: lambda: _edited(
        lambda p: (_set("binarized", ["layers.conv3"])(p), _set("precisions", {"layers.conv3": 4})(p))
    ),
    Case.PRECISIONS_NOT_DICT: lambda: _edited(_set("precisions", ["layers.conv3"])),
    Case.PRECISIONS_BOOL_BITS: lambda: _edited(_set("precisions", {"layers.conv3": True})),
    Case.METADATA_NOT_DICT: lambda: _edited(_set("metadata", [1])),
}


def test_every_case_has_a_builder() -> None:
    assert set(BUILDERS) == set(Case)
    assert len(Case) >= 30


def test_base_files_are_valid(tmp_path: Path) -> None:
    for data in (_good(), _good(tiny=True), _edited(lambda p: None)):
        path = tmp_path / "ok.pt"
        path.write_bytes(data)
        read_checkpoint(path)


@pytest.mark.parametrize("case", list(Case), ids=lambda case: case.name.lower())
def test_malformed_checkpoint_is_rejected(tmp_path: Path, case: Case, recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(BUILDERS[case]())
    recwarn.clear()
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=case.value) as info:
        read_checkpoint(path)
    assert time.perf_counter() - start < 5.0, "rejection must be fast"
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)
    assert not [w for w in recwarn if "torch" in str(w.filename)], "torch must not print warnings before our error"


def test_raw_pickle_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The 2-line torch warning that once came before our error is gone: the error is the only output."""
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"format": "albsnn-checkpoint"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(CheckpointError, match="raw pickle"):
            read_checkpoint(path)
    assert capfd.readouterr() == ("", "")


def _read_bytes(folder: Path, data: bytes) -> None:
    path = folder / "fuzz.pt"
    path.write_bytes(data)
    try:
        read_checkpoint(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc), "one line"


_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_TINY_SIZE = len(_good(tiny=True))


@_FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, _TINY_SIZE - 1), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, _TINY_SIZE)),
)
def test_random_flips_and_truncations(tmp_path: Path, flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(_good(tiny=True))
    for position, mask in flips:
        data[position] ^= mask
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _read_bytes(tmp_path, bytes(data[:cut] if cut is not None else data))


_HOSTILE = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        1.5,
        float("nan"),
        float("inf"),
        "nan",
        "",
        "x" * 300,
        [],
        {},
        [None],
        {"type": "conv"},
        torch.zeros(0),
        torch.full((2,), float("nan")),
        torch.zeros(2, dtype=torch.int64),
        torch.zeros(1, 1, 3, 3),
    ]
)
_PATHS = st.sampled_from(
    [
        "format",
        "version",
        "timesteps",
        "spec",
        "spec/input",
        "spec/input/shape",
        "spec/input/shape/1",
        "spec/input/mean/0",
        "spec/num_classes",
        "spec/neuron",
        "spec/neuron/tau",
        "spec/neuron/surrogate",
        "spec/layers",
        "spec/layers/0",
        "spec/layers/0/out_channels",
        "spec/layers/0/kernel_size",
        "spec/layers/0/padding",
        "spec/layers/1/eps",
        "spec/layers/3/out_channels",
        "binarized",
        "precisions",
        "state_dict",
        "state_dict/layers.conv1.weight",
        "state_dict/layers.bn1.running_var",
        "state_dict/layers.bn1.num_batches_tracked",
        "metadata",
    ]
)


@_FUZZ
@given(edits=st.lists(st.tuples(_PATHS, _HOSTILE), min_size=1, max_size=3))
def test_random_payload_edits(tmp_path: Path, edits: list[tuple[str, Any]]) -> None:
    """Hostile values anywhere in a valid payload, saved again (the counterpart of a repaired header CRC)."""
    payload = _payload(tiny=True)
    for where, value in edits:
        try:
            _set(where, value)(payload)
        except (KeyError, IndexError, TypeError):
            continue  # the path no longer exists after an earlier edit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _read_bytes(tmp_path, _bytes_of(payload))
