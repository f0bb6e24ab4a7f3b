"""Output locations are checked before any work: the wrong kind, a file on the way, a missing or unwritable folder."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from albsnn_compress.errors import AlbsnnError
from albsnn_compress.files import output_paths
from albsnn_compress.files.output_paths import (
    PROBE_PREFIX,
    RULE_INPUT,
    RULE_REGULAR,
    RULE_SYMLINK,
    OutputError,
    check_output_file,
    check_output_folder,
    check_output_target,
    output_error,
    writing,
)

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture()
def place(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "a_file/model.pt",
            r"cannot write .*a_file/model.pt: .*a_file is a file, not a folder; choose another output path",
        ),
        ("a_file/deeper/model.pt", r"a_file is a file, not a folder"),
        ("missing/model.pt", r"cannot write .*missing/model.pt: folder .*missing does not exist; create it first"),
        ("a_folder", r"cannot write .*a_folder: it is a folder; pass a file name"),
    ],
)
def test_a_file_that_cannot_be_written_is_refused(place: Path, target: str, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        check_output_file(place / target)
    assert sorted(p.name for p in place.iterdir()) == ["a_file", "a_folder"]  # nothing created, no probe left


def test_a_writable_file_place_passes_and_leaves_nothing(place: Path) -> None:
    assert check_output_file(place / "model.pt") == place / "model.pt"
    assert check_output_file(place / "a_file") == place / "a_file"  # an existing file is replaced later
    assert sorted(p.name for p in place.iterdir()) == ["a_file", "a_folder"]


@pytest.mark.parametrize(
    ("target", "parents", "message"),
    [
        ("a_file", True, r"cannot write into .*a_file: it is a file, not a folder; choose another output folder"),
        ("a_file/out", True, r"cannot write into .*a_file/out: .*a_file is a file, not a folder"),
        ("missing/out", False, r"cannot write into .*missing/out: folder .*missing does not exist; create it first"),
    ],
)
def test_a_folder_that_cannot_be_written_is_refused(place: Path, target: str, parents: bool, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        check_output_folder(place / target, parents=parents)


def test_a_new_folder_is_checked_in_its_nearest_existing_ancestor_and_not_created(place: Path) -> None:
    assert check_output_folder(place / "new" / "deep") == place / "new" / "deep"
    assert not (place / "new").exists()
    assert check_output_folder(place / "a_folder") == place / "a_folder"


@pytest.mark.skipif(
    ROOT,
    reason="root ignores permission bits, so a chmod-ed folder stays writable (the read-only "
    "mount case is simulated in test_a_read_only_disk_is_named)",
)
def test_a_folder_without_write_permission_is_refused(place: Path) -> None:
    locked = place / "a_folder"
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(
            OutputError, match=r"cannot write .*model.pt: permission denied; choose a folder you can write"
        ):
            check_output_file(locked / "model.pt")
        with pytest.raises(OutputError, match=r"permission denied"):
            check_output_folder(locked / "out")
    finally:
        locked.chmod(stat.S_IRWXU)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EROFS, "the file system is read-only; choose a folder on a writable disk"),
        (errno.EACCES, "permission denied; choose a folder you can write, or change its permissions"),
        (errno.ENOSPC, "no space left on the device; free some space or choose another disk"),
        (errno.EDQUOT, "the disk quota is exceeded"),
    ],
)
def test_a_read_only_disk_is_named(place: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str) -> None:
    """What the probe meets on a read-only mount, a foreign folder or a full disk (simulated: tests run as root)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(output_paths.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=f"cannot write .*model.pt: {fix}") as caught:
        check_output_file(place / "model.pt")
    assert caught.value.errno == code and "\n" not in str(caught.value) and not str(caught.value).startswith("[Errno")
    with pytest.raises(OutputError, match=rf"cannot write .*new/out \(nothing can be created in .*\): {fix}"):
        check_output_folder(place / "new" / "out")


def test_writing_turns_an_os_error_into_one_line(place: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write .*out.bin: no space left on the device") as caught:
        with writing(place / "out.bin"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value, AlbsnnError) and isinstance(caught.value, OSError)
    with pytest.raises(ValueError, match="not an OSError"):  # anything else passes through
        with writing(place / "out.bin"):
            raise ValueError("not an OSError")


def test_a_file_on_the_way_is_named_when_the_write_finds_it(place: Path) -> None:
    try:
        (place / "a_file" / "x.pt").write_bytes(b"")
    except OSError as exc:
        error = output_error(place / "a_file" / "x.pt", exc)
    assert str(error).endswith("a_file is a file, not a folder; choose another output path")


# -- the output rules: not an input, no symbolic link, regular files only ----------------------------------


@pytest.fixture()
def inputs(place: Path) -> Path:
    (place / "in.albsnn").write_bytes(b"the input")
    return place / "in.albsnn"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda place, inp: inp, rf"cannot write .*in.albsnn: it is the input .*in.albsnn \(rule: {RULE_INPUT}\)"),
        (
            lambda place, inp: (os.link(inp, place / "hard.onnx"), place / "hard.onnx")[1],
            rf"cannot write .*hard.onnx: it is the same file as the input .*in.albsnn .*\(rule: {RULE_INPUT}\)",
        ),
        (
            lambda place, inp: ((place / "soft.onnx").symlink_to(inp), place / "soft.onnx")[1],
            rf"cannot write .*soft.onnx: it is a symbolic link to the input .*in.albsnn \(rule: {RULE_INPUT}\)",
        ),
        (  # another spelling of the same path, through a linked folder
            lambda place, inp: ((place / "via").symlink_to(place), place / "via" / "in.albsnn")[1],
            rf"cannot write .*via/in.albsnn: it is the same file as the input .*\(rule: {RULE_INPUT}\)",
        ),
        (
            lambda place, inp: ((place / "l.onnx").symlink_to(place / "a_file"), place / "l.onnx")[1],
            rf"cannot write .*l.onnx: it is a symbolic link to .*a_file \(rule: {RULE_SYMLINK}\); remove the link",
        ),
        (
            lambda place, inp: ((place / "d.onnx").symlink_to("gone\n\x1b[2J"), place / "d.onnx")[1],
            rf"cannot write .*d.onnx: it is a symbolic link to gone\\n\\x1b\[2J \(rule: {RULE_SYMLINK}\)",
        ),
        (
            lambda place, inp: (os.mkfifo(place / "f.onnx"), place / "f.onnx")[1],
            rf"cannot write .*f.onnx: it is a FIFO \(named pipe\), not a regular file \(rule: {RULE_REGULAR}\)",
        ),
        (
            lambda place, inp: Path("/dev/full"),
            rf"cannot write /dev/full: it is a character device, not a regular file \(rule: {RULE_REGULAR}\)",
        ),
    ],
    ids=["same path", "hard link", "symlink to it", "linked folder", "symlink", "dangling", "FIFO", "device"],
)
def test_an_output_that_breaks_a_rule_is_refused_in_one_line(
    place: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, make, message: str
) -> None:
    target = make(place, inputs)
    if not os.path.lexists(target):
        pytest.skip(f"{target} does not exist here")

    def no_probe(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("probed before the rules were checked")

    monkeypatch.setattr(output_paths.tempfile, "mkstemp", no_probe)
    for check in (lambda: check_output_file(target, inputs=[inputs]), lambda: check_output_target(target, [inputs])):
        with pytest.raises(OutputError, match=message) as caught:
            check()
        assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert inputs.read_bytes() == b"the input"


def test_the_rules_pass_a_new_name_and_a_regular_file_that_is_no_input(place: Path, inputs: Path) -> None:
    check_output_target(place / "new.onnx", [inputs])
    check_output_target(place / "a_file", [inputs, place / "missing-input"])  # replaced later
    os.link(place / "a_file", place / "second_link")
    check_output_target(place / "second_link", [inputs])  # a hard link to no input is an ordinary file
    assert check_output_file(place / "a_folder" / "new.onnx", inputs=[inputs]) == place / "a_folder" / "new.onnx"


def test_a_folder_reached_through_a_link_is_followed_and_a_dangling_one_refused(place: Path) -> None:
    (place / "via").symlink_to(place / "a_folder", target_is_directory=True)
    assert check_output_folder(place / "via") == place / "via"
    assert check_output_file(place / "via" / "m.onnx") == place / "via" / "m.onnx"
    (place / "gone").symlink_to(place / "nowhere")
    with pytest.raises(OutputError, match=r"cannot write into .*gone: it is a symbolic link to .*nowhere, which does"):
        check_output_folder(place / "gone")


def test_probe_files_a_killed_run_left_are_removed_and_nothing_else(place: Path) -> None:
    (place / f"{PROBE_PREFIX}k2j4h5g6.tmp").write_bytes(b"")
    (place / f"{PROBE_PREFIX}notmine.txt").write_bytes(b"")
    (place / f"{PROBE_PREFIX}a1b2c3d4.tmp").mkdir()
    check_output_file(place / "m.onnx")
    assert sorted(p.name for p in place.iterdir()) == sorted(
        ["a_file", "a_folder", f"{PROBE_PREFIX}notmine.txt", f"{PROBE_PREFIX}a1b2c3d4.tmp"]
    )
