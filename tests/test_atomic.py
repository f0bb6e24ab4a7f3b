"""Atomic writes: the target is the old or the new content, never a mix; no temp file left."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from albsnn_compress.errors import OutputError
from albsnn_compress.files import atomic
from albsnn_compress.files.atomic import atomic_write, atomic_write_bytes, remove_stale_temporaries, temporary_pattern
from albsnn_compress.files.output_paths import RULE_REGULAR, RULE_SYMLINK


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


def _entries(folder: Path) -> dict[str, object]:
    """Every entry of ``folder``, nothing followed: links by their text, files by their bytes."""
    out: dict[str, object] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_symlink():
            out[entry.name] = ("link", os.readlink(entry.path))
        elif entry.is_file(follow_symlinks=False):
            out[entry.name] = ("file", Path(entry.path).read_bytes())
        else:
            out[entry.name] = stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
    return out


HAZARDS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink to a file outside": (lambda target, outside: target.symlink_to(outside), RULE_SYMLINK),
    "symlink to a file beside it": (lambda target, _o: target.symlink_to(target.parent / "beside.txt"), RULE_SYMLINK),
    "dangling symlink": (lambda target, _o: target.symlink_to(target.parent / "nowhere"), RULE_SYMLINK),
    "symlink to a device": (lambda target, _o: target.symlink_to("/dev/null"), RULE_SYMLINK),
    "FIFO": (lambda target, _o: os.mkfifo(target), RULE_REGULAR),
    "folder": (lambda target, _o: target.mkdir(), "it is a folder"),
}


@pytest.mark.parametrize("hazard", sorted(HAZARDS))
def test_only_a_regular_file_is_ever_replaced(tmp_path: Path, hazard: str) -> None:
    """A link is never followed nor replaced, a node never turned into a file; the refusal names the rule."""
    folder, outside = tmp_path / "out", tmp_path / "outside.txt"
    folder.mkdir()
    outside.write_text("outside")
    (folder / "beside.txt").write_text("beside")
    plant, rule = HAZARDS[hazard]
    plant(folder / "model.onnx", outside)
    before = _entries(folder)
    with pytest.raises(OutputError, match=rf"cannot write .*model.onnx: .*{rule}") as caught:
        atomic_write_bytes(folder / "model.onnx", b"new")
    assert "\n" not in str(caught.value)
    assert _entries(folder) == before and outside.read_text() == "outside"  # no temporary file either


def test_a_device_is_refused_before_a_temporary_file_is_made_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_temporary(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a temporary file was made in /dev")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", no_temporary)
    with pytest.raises(OutputError, match=rf"cannot write /dev/null: it is a character device.*{RULE_REGULAR}"):
        atomic_write_bytes("/dev/null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_link_planted_while_writing_is_refused_at_the_rename(tmp_path: Path) -> None:
    """The rules are checked again just before ``os.replace``: a link that appeared meanwhile stays as it was."""
    target, outside = tmp_path / "model.onnx", tmp_path / "outside.txt"
    outside.write_text("outside")
    with pytest.raises(OutputError, match=RULE_SYMLINK):
        with atomic_write(target) as stream:
            stream.write(b"new")
            target.symlink_to(outside)
    assert os.readlink(target) == str(outside) and outside.read_text() == "outside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "outside.txt"]


def test_a_stale_temporary_that_is_an_input_is_kept(tmp_path: Path) -> None:
    """Only a process's own leftovers go: a file named like a temporary that is the run's input stays."""
    name = ".model.onnx.abcd1234.tmp"
    (tmp_path / name).write_bytes(b"an input")
    os.link(tmp_path / name, tmp_path / "input.albsnn")
    assert remove_stale_temporaries(tmp_path, ["model.onnx"], keep=[tmp_path / "input.albsnn"]) == []
    assert remove_stale_temporaries(tmp_path, ["model.onnx"]) == [tmp_path / name]
