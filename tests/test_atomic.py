"""Atomic writes: the target is the old or the new content, never a mix; no temp file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from albsnn_compress.files.atomic import atomic_write, atomic_write_bytes, remove_stale_temporaries, temporary_pattern


def test_new_content_and_normal_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("fail_after", [0, 1, 5, 100])
def test_failure_midway_keeps_the_old_file(tmp_path: Path, fail_after: int) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(target) as stream:
            stream.write(b"x" * fail_after)
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("broken", ["fsync", "replace"])
def test_fsync_or_rename_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content")

    def fail(*_args, **_kwargs):
        raise OSError(f"{broken} failed")

    monkeypatch.setattr(os, broken, fail)
    with pytest.raises(OSError, match=f"{broken} failed"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_stale_temporaries_of_given_names_are_removed_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(target) as stream:
            stream.write(b"half")
            stale = next(p for p in tmp_path.iterdir() if temporary_pattern("model.onnx").fullmatch(p.name))
            os.link(stale, tmp_path / stale.name.replace(".tmp", ".keep"))  # what SIGKILL would leave: a copy survives
            raise RuntimeError("killed")
    left = tmp_path / stale.name.replace(".tmp", ".keep")
    left.rename(stale)
    (tmp_path / ".model.onnx.folder00.tmp").mkdir()  # a folder of that name is not ours
    (tmp_path / ".other.abcdefgh.tmp").write_bytes(b"")  # another name
    (tmp_path / "model.onnx").write_bytes(b"old")
    assert remove_stale_temporaries(tmp_path, ["model.onnx", "report.json"]) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".model.onnx.folder00.tmp",
        ".other.abcdefgh.tmp",
        "model.onnx",
    ]
    assert remove_stale_temporaries(tmp_path / "missing", ["model.onnx"]) == []
