"""Checkpoints: identical outputs after a round trip; every bad file gets its own clear error."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from albsnn_compress import binarize_, binarized_layers, load_checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.errors import CheckpointError
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet


def _model(timesteps: int = 2) -> SpikingNet:
    torch.manual_seed(0)
    model = SpikingNet(make_preset("digits-small", [1, 8, 8], 10, [0.3], [0.37]), timesteps)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give batch norm non-trivial statistics
            model(torch.rand(32, 1, 8, 8))
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _model()
    binarize_(model, ["layers.conv2", "layers.conv3"])
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"dataset": "digits", "seed": 3})
    loaded = load_checkpoint(path)
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert binarized_layers(loaded) == ["layers.conv2", "layers.conv3"]
    assert loaded.metadata == {"dataset": "digits", "seed": 3}
    assert loaded.timesteps == 2


def test_plain_torch_load_reads_it_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, _model(), {})
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "albsnn-checkpoint" and payload["version"] == 1


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(_model(), path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_checkpoint(path)


class _Canary:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "albsnn-checkpoint", "payload": _Canary(str(canary))}, path)
    with pytest.raises(CheckpointError, match="never unpickled"):
        read_checkpoint(path)
    assert not canary.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Canary(str(canary))))
    with pytest.raises(CheckpointError):
        read_checkpoint(raw)
    assert not canary.exists()


def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "something-else"}, "format tag is 'something-else'"),
        ({"weight": torch.zeros(2)}, "format tag is None"),
        ([1, 2, 3], "format tag is 'list'"),
    ],
)
def test_foreign_payloads(tmp_path: Path, payload, message: str) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def _saved_payload(tmp_path: Path) -> dict:
    path = tmp_path / "ok.pt"
    save_checkpoint(path, _model(), {"dataset": "digits"})
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(version=99), "version 99 is not supported"),
        (lambda p: p.update(timesteps=0), "'timesteps' must be an integer >= 1"),
        (lambda p: p["spec"].update(layers=[]), "bad architecture spec"),
        (lambda p: p["state_dict"].pop("layers.conv2.weight"), "missing \\['layers.conv2.weight'\\]"),
        (lambda p: p["state_dict"].update({"layers.conv2.weight": torch.zeros(3)}), "has shape \\[3\\]"),
        (
            lambda p: p["state_dict"].update({"layers.conv2.weight": torch.zeros(32, 16, 3, 3, dtype=torch.uint8)}),
            "has dtype torch.uint8",
        ),
        (lambda p: p["state_dict"].update({"layers.conv2.weight": "text"}), "must be a dense tensor"),
        (lambda p: p.update(binarized=["layers.bn1"]), "'binarized' must list binarizable layer names"),
        (lambda p: p.update(metadata=[1]), "'metadata' must be a dict"),
    ],
)
def test_inconsistent_checkpoints(tmp_path: Path, mutate, message: str) -> None:
    payload = _saved_payload(tmp_path)
    mutate(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    save_checkpoint(path, _model(), {})
    data = path.read_bytes()
    broken = tmp_path / "cut0.pt"
    broken.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"cut0\.pt: is an empty file \(0 bytes\), not a PyTorch checkpoint"):
        read_checkpoint(broken)
    for cut in (10, len(data) // 2, len(data) - 5):
        broken = tmp_path / f"cut{cut}.pt"
        broken.write_bytes(data[:cut])
        with pytest.raises(
            CheckpointError, match="is a truncated or damaged zip archive, not a readable PyTorch checkpoint"
        ):
            read_checkpoint(broken)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(
        CheckpointError, match=r"notes\.pt: is a text file, not a PyTorch checkpoint \(a zip archive expected\)"
    ):
        read_checkpoint(text)
    assert zipfile.is_zipfile(path)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, _model(), {"generation": 1})
    before = path.read_bytes()

    def broken_replace(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _model(), {"generation": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
