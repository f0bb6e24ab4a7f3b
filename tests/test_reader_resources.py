"""The readers under a memory limit: an allocation bomb fails this test instead of the machine.

Each check runs in a subprocess that first warms up (imports, one small read),
then caps its own address space with ``resource.setrlimit(RLIMIT_AS, ...)`` to
what it uses now plus a budget, and reads hostile files: each must be refused
with its own message, not with a MemoryError, a RuntimeError from the allocator
or a killed process. Valid files must still read under the same cap, and their
peak memory stays near the file plus the model (``docs/format.md``, section 4).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from albsnn_compress.binarize import binarize_
from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.precision import set_precision_
from albsnn_compress.snn.spec import SpikingNet

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status are Linux"),
    pytest.mark.subprocess,
]

GOLDEN = Path(__file__).resolve().parent / "golden"
_BUDGET = 768 << 20  # address space allowed beyond the warmed-up process

_HARNESS = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from albsnn_compress.errors import AlbsnnError
    from albsnn_compress.model_file import load_model_file

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    cases, warm, budget = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    load_model_file(warm)  # imports, lazy initialisation and allocator arenas happen before the cap
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + budget, resource.RLIM_INFINITY))
    results = []
    for path in cases:
        try:
            load_model_file(path)
            outcome = "read"
        except AlbsnnError as exc:
            outcome = f"refused: {exc}"
        except BaseException as exc:  # what the test must never see
            outcome = f"escaped {type(exc).__name__}: {exc}"[:300]
        results.append(outcome)
    print(json.dumps(results))
""")


def _run(cases: list[Path], warm: Path, budget: int = _BUDGET) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _HARNESS, json.dumps([str(p) for p in cases]), str(warm), str(budget)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _save(path: Path, payload: dict) -> Path:
    torch.save(payload, path)
    return path


def _checkpoint_payload(spec: dict, state: dict) -> dict:
    return {
        "format": "albsnn-checkpoint",
        "version": 1,
        "spec": spec,
        "timesteps": 1,
        "binarized": [],
        "state_dict": state,
        "metadata": {},
    }


_FC_SPEC = {
    "input": {"shape": [1, 28, 28]},
    "num_classes": 10,
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 1 << 18, "bias": False},
        {"type": "linear", "out_features": 10, "bias": False},
    ],
}


def _zip_bomb(path: Path) -> Path:
    """A checkpoint-shaped zip whose deflated member expands 1000x (256 MiB of zeros in about 250 KB)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            zeros = bytes(1 << 24)
            for _ in range(16):
                member.write(zeros)
    return path


def _strided_checkpoint(path: Path) -> Path:
    """Every weight a stride-0 view of one float: a few KB that torch.load turns into 2 GiB tensors once copied."""
    state = {
        "layers.linear1.weight": torch.zeros(1).expand(1 << 18, 784),
        "layers.linear2.weight": torch.zeros(1).expand(10, 1 << 18),
    }
    return _save(path, _checkpoint_payload(_FC_SPEC, state))


def _container_header_edit(path: Path, edit) -> Path:
    from tests.test_container_malformed import _edit

    path.write_bytes(_edit(edit))
    return path


def test_hostile_files_are_refused_under_a_memory_cap(tmp_path: Path) -> None:
    def huge_forward(header: dict, body: bytes) -> None:
        header["spec"]["input"]["shape"] = [1, 128, 128]
        header["timesteps"] = 4096

    room = (16 << 20) - 24 - 16
    flat = tmp_path / "flat-header.albsnn"
    from tests.test_container_malformed import _file

    flat.write_bytes(_file(b'{"a":[' + b"[]," * (room // 3) + b"[]]}", b""))
    cases = {
        # file: the message it must be refused with
        _save(tmp_path / "huge-spec.pt", _checkpoint_payload(_FC_SPEC, {})): "more than a .*-byte checkpoint can hold",
        _zip_bomb(tmp_path / "zip-bomb.pt"): "member 'archive/data.pkl' is compressed",
        _strided_checkpoint(tmp_path / "strided.pt"): "more than a .*-byte checkpoint can hold",
        _container_header_edit(
            tmp_path / "huge-forward.albsnn", huge_forward
        ): "a forward pass of one image at T=4096 needs",
        flat: r"header JSON: \d+ or more objects and arrays, at most 262144 allowed",
    }
    results = _run(list(cases), GOLDEN / "fc_float16.albsnn")
    for (path, message), outcome in zip(cases.items(), results):
        assert outcome.startswith("refused: "), (path.name, outcome)
        assert re.search(message, outcome), (path.name, outcome)


_PEAK = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from albsnn_compress.model_file import load_model_file

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    load_model_file(sys.argv[2])  # warm up: imports and first-call costs are not the file's
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # restart the peak (VmHWM) from now; ru_maxrss keeps the parent's
        refs.write("5")
    model = load_model_file(sys.argv[1]).model
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"added": status("VmHWM") - before, "file": os.path.getsize(sys.argv[1]), "model": model_bytes}))
""")


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 46 MB fully connected model: binarized as a container (about 1.5 MB), at 8 bits as a version-2 container
    (about 11.6 MB) and as a float checkpoint."""
    folder = tmp_path_factory.mktemp("wide")
    spec = {
        "input": {"shape": [1, 28, 28]},
        "num_classes": 10,
        "layers": [
            {"type": "flatten"},
            {"type": "linear", "out_features": 4096, "bias": False},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 2048, "bias": False},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 10},
        ],
    }
    torch.manual_seed(0)
    model = SpikingNet(spec).eval()
    save_checkpoint(folder / "wide.pt", model, {})
    binarize_(model, ["layers.linear1", "layers.linear2"])
    write_container(folder / "wide.albsnn", model)
    set_precision_(model, {"layers.linear1": 8, "layers.linear2": 8})  # from the latent weights, unbinarized
    write_container(folder / "wide-int8.albsnn", model)
    return {
        "container": folder / "wide.albsnn",
        "container-int8": folder / "wide-int8.albsnn",
        "checkpoint": folder / "wide.pt",
    }


@pytest.mark.parametrize("kind", ["container", "container-int8", "checkpoint"])
def test_reading_peaks_near_the_file_plus_the_model(wide_files: dict[str, Path], kind: str) -> None:
    """Reading a binarized 1.5 MB container once peaked at 5.9x (file + model): now about 1.0x, plus a few MiB."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(wide_files[kind]), str(GOLDEN / "fc_float16.albsnn")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(done.stdout)
    allowed = 1.25 * (measured["file"] + measured["model"]) + (16 << 20)
    assert 0 < measured["added"] <= allowed, measured


def test_valid_files_read_under_the_cap(wide_files: dict[str, Path]) -> None:
    results = _run(
        [
            wide_files["container"],
            wide_files["container-int8"],
            wide_files["checkpoint"],
            GOLDEN / "conv_mixed.albsnn",
            GOLDEN / "kbit_mixed.albsnn",
        ],
        GOLDEN / "fc_float16.albsnn",
        budget=384 << 20,
    )
    assert results == ["read"] * 5


def test_a_damaged_gzip_bomb_is_not_a_container(tmp_path: Path) -> None:
    """gzip data is named, not parsed: neither reader decompresses it."""
    path = tmp_path / "model.pt"
    path.write_bytes(gzip.compress(bytes(1 << 20)))
    results = _run([path], GOLDEN / "fc_float16.albsnn")
    assert results[0].startswith("refused: ") and "is a gzip-compressed file" in results[0]
