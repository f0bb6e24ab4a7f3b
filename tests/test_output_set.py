"""One run's files as one set: staged, renamed into place, manifest last; an interruption leaves the previous set."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from albsnn_compress.errors import OutputError
from albsnn_compress.files.output_paths import RULE_INPUT, RULE_REGULAR, RULE_SYMLINK
from albsnn_compress.files.output_set import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    STAGING_PREFIX,
    OutputSet,
    OutputSetError,
    read_manifest,
    verify_output_set,
)

NAMES = ("m.albsnn", "m.onnx", "report.json")


def _write_set(folder: Path, tag: str) -> OutputSet:
    outputs = OutputSet(folder, NAMES)
    outputs.prepare()
    with outputs.staging() as stage:
        for name in NAMES:
            (stage / name).write_text(f"{tag} {name}")
    return outputs


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_set_lands_with_its_manifest_last(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    outputs = _write_set(folder, "one")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*NAMES, MANIFEST_NAME])  # no staging folder left
    manifest = read_manifest(folder / MANIFEST_NAME)
    assert manifest["schema"] == MANIFEST_SCHEMA and manifest["versions"]["albsnn-compress"]
    for name in NAMES:
        data = (folder / name).read_bytes()
        assert manifest["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        check = verify_output_set(folder / name)
        assert check.complete and check.problem is None and check.files == 3
    assert outputs.paths["m.onnx"] == folder / "m.onnx"


def test_an_interrupted_run_leaves_the_previous_complete_set(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    _write_set(folder, "old")
    before = _contents(folder)
    outputs = OutputSet(folder, NAMES)
    outputs.prepare()
    with pytest.raises(RuntimeError, match="export failed"):
        with outputs.staging() as stage:
            (stage / "m.albsnn").write_text("new m.albsnn")
            (stage / "m.onnx").write_text("half an onn")
            raise RuntimeError("export failed")
    assert _contents(folder) == before  # the old set, its manifest, nothing staged
    assert verify_output_set(folder / "m.onnx").complete


def test_a_commit_cut_short_leaves_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between removing the old manifest and writing the new one, a folder is never a valid set."""
    folder = tmp_path / "out"
    _write_set(folder, "old")
    real_replace, calls = os.replace, []

    def replace_then_die(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(OutputError, match=r"cannot write .*manifest.json: no space left on the device"):
        _write_set(folder, "new")
    monkeypatch.undo()
    assert not (folder / MANIFEST_NAME).exists()
    assert (folder / "m.albsnn").read_text() == "new m.albsnn" and (folder / "m.onnx").read_text() == "old m.onnx"
    check = verify_output_set(folder / "m.onnx")
    assert not check.complete and "has no manifest.json" in check.problem
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # the staging folder is gone too


def test_what_a_killed_run_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    _write_set(folder, "old")
    leftovers = [
        ".albsnn-staging-abcd_123/m.onnx",
        ".m.onnx.k2j4h5g6.tmp",
        f".{MANIFEST_NAME}.zzzzzzzz.tmp",
        ".albsnn-probe-q1w2e3r4.tmp",
    ]
    kept = [".m.onnx.toolong99.tmp.bak", ".other.abcdefgh.tmp", "notes.txt", ".albsnn-staging-x"]
    for name in leftovers + kept:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("left")
    OutputSet(folder, NAMES).prepare()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*NAMES, MANIFEST_NAME, *kept])


def test_prepare_refuses_a_foreign_manifest_and_a_folder_in_the_way(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"name": "my web app"}')
    with pytest.raises(
        OutputSetError, match=r"manifest.json: not an albsnn-compress output manifest .*move it or choose"
    ):
        OutputSet(tmp_path, NAMES).prepare()
    (tmp_path / MANIFEST_NAME).unlink()
    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(
        OutputError, match=r"cannot write .*m.onnx: it is a folder; move it or choose another output folder"
    ):
        OutputSet(tmp_path, NAMES).prepare()
    with pytest.raises(OutputError, match="must be distinct file names, not hidden"):
        OutputSet(tmp_path, (".hidden", "a/b"))


def _manifest(**changes: object) -> dict:
    entry = {"bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    manifest = {"schema": MANIFEST_SCHEMA, "version": 1, "files": {"m.onnx": entry}, "versions": {"python": "3"}}
    manifest.update(changes)
    return manifest


MALFORMED_MANIFESTS = {
    "not json": (b"{", "not strict JSON"),
    "not utf-8": (b'{"schema": "\xff"}', "not strict JSON"),
    "duplicate key": (b'{"schema": 1, "schema": 2}', "duplicate key"),
    "nan": (b'{"version": NaN}', "not strict JSON"),
    "deep": (b"[" * 100 + b"]" * 100, "not strict JSON"),
    "top level array": (b"[]", 'no "schema"'),
    "other schema": (json.dumps(_manifest(schema="x")).encode(), 'no "schema"'),
    "future version": (json.dumps(_manifest(version=2)).encode(), "version 2 is not 1"),
    "bool version": (json.dumps(_manifest(version=True)).encode(), "version"),
    "unknown key": (json.dumps(_manifest(extra=1)).encode(), "are not schema, version, files, versions"),
    "no files": (json.dumps(_manifest(files={})).encode(), "'files' is not a non-empty object"),
    "path traversal": (
        json.dumps(_manifest(files={"../x": {"bytes": 1, "sha256": "0" * 64}})).encode(),
        "not a plain file name",
    ),
    "absolute path": (
        json.dumps(_manifest(files={"/etc/passwd": {"bytes": 1, "sha256": "0" * 64}})).encode(),
        "not a plain",
    ),
    "negative size": (json.dumps(_manifest(files={"m.onnx": {"bytes": -1, "sha256": "0" * 64}})).encode(), "bytes"),
    "short hash": (json.dumps(_manifest(files={"m.onnx": {"bytes": 1, "sha256": "0"}})).encode(), "64 hex digits"),
    "versions not strings": (
        json.dumps(_manifest(versions={"python": 3})).encode(),
        "'versions' is not an object of strings",
    ),
    "huge": (b" " * (1 << 20) + b"{}", "larger than"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MANIFESTS))
def test_a_malformed_manifest_is_one_output_set_error(tmp_path: Path, case: str) -> None:
    data, message = MALFORMED_MANIFESTS[case]
    (tmp_path / MANIFEST_NAME).write_bytes(data)
    with pytest.raises(OutputSetError, match=message) as caught:
        read_manifest(tmp_path / MANIFEST_NAME)
    assert "\n" not in str(caught.value)
    (tmp_path / "m.onnx").write_bytes(b"abc")
    check = verify_output_set(tmp_path / "m.onnx")
    assert not check.complete and check.problem is not None and "\n" not in check.problem


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda folder: (folder / "m.onnx").write_text("changed"), "m.onnx is not the file .*manifest.json lists"),
        (lambda folder: (folder / "report.json").unlink(), "report.json is missing or unreadable"),
        (
            lambda folder: ((folder / "m.onnx").unlink(), (folder / "m.onnx").symlink_to(folder / "m.albsnn")),
            "m.onnx is not",
        ),
    ],
)
def test_a_mixed_set_is_named(tmp_path: Path, change, problem: str) -> None:
    _write_set(tmp_path, "one")
    change(tmp_path)
    check = verify_output_set(tmp_path / "m.albsnn")
    assert not check.complete and check.manifest == tmp_path / MANIFEST_NAME
    assert check.problem is not None and __import__("re").search(problem, check.problem)


def test_a_file_the_manifest_does_not_list_is_not_part_of_the_run(tmp_path: Path) -> None:
    _write_set(tmp_path, "one")
    (tmp_path / "mine.albsnn").write_text("x")
    check = verify_output_set(tmp_path / "mine.albsnn")
    assert not check.complete and check.problem is None and check.manifest is not None


def test_hostile_names_in_a_manifest_are_shown_escaped(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text(
        json.dumps(
            _manifest(files={"m.onnx": {"bytes": 3, "sha256": "0" * 64}, "\x1b[2Jx": {"bytes": 3, "sha256": "0" * 64}})
        )
    )
    (tmp_path / "m.onnx").write_bytes(b"abc")
    check = verify_output_set(tmp_path / "m.onnx")
    assert check.problem is not None and "\x1b" not in check.problem and "\\x1b[2Jx" in check.problem


# -- the output rules on every name of a set --------------------------------------------------------------


def _tree(folder: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            out[str(path)] = path.read_bytes()
        else:
            out[str(path)] = path.stat().st_mode
    return out


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (lambda folder, inp: inp.rename(folder / "m.onnx"), rf"m.onnx: it is the input .*\(rule: {RULE_INPUT}\)"),
        (lambda folder, inp: os.link(inp, folder / "report.json"), r"report.json: it is the same file as the input"),
        (lambda folder, inp: (folder / "m.albsnn").symlink_to(inp), r"m.albsnn: it is a symbolic link to the input"),
        (lambda folder, inp: (folder / "m.onnx").symlink_to(folder.parent / "secret"), RULE_SYMLINK),
        (lambda folder, inp: (folder / MANIFEST_NAME).symlink_to(folder.parent / "secret"), RULE_SYMLINK),
        (lambda folder, inp: os.mkfifo(folder / MANIFEST_NAME), rf"it is a FIFO .*{RULE_REGULAR}"),
        (lambda folder, inp: os.mkfifo(folder / "report.json"), RULE_REGULAR),
    ],
    ids=[
        "input named like a member",
        "hard link",
        "symlink to the input",
        "symlink",
        "manifest symlink",
        "manifest FIFO",
        "FIFO",
    ],
)
def test_a_name_of_the_set_that_breaks_a_rule_is_refused_before_anything_changes(
    tmp_path: Path, plant, message: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "secret").write_text("outside")
    (folder / ".albsnn-staging-abcd1234").mkdir()  # a leftover: removed only once every name passed
    inp = tmp_path / "m.pt"
    inp.write_bytes(b"the input")
    plant(folder, inp)
    inputs = (folder / "m.onnx",) if not inp.exists() else (inp,)
    before = _tree(tmp_path)
    with pytest.raises(OutputError, match=message) as caught:
        OutputSet(folder, NAMES, inputs=inputs).prepare()
    assert "\n" not in str(caught.value) and "choose another output folder" in str(caught.value)
    assert _tree(tmp_path) == before


def test_a_link_planted_during_the_run_is_refused_at_commit_and_the_old_set_stays(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    _write_set(folder, "old")
    before = _contents(folder)
    outputs = OutputSet(folder, NAMES)
    outputs.prepare()
    with pytest.raises(OutputError, match=rf"m.onnx: it is a symbolic link .*{RULE_SYMLINK}"):
        with outputs.staging() as stage:
            for name in NAMES:
                (stage / name).write_text(f"new {name}")
            (folder / "m.onnx").unlink()
            (folder / "m.onnx").symlink_to(tmp_path / "elsewhere")
    (folder / "m.onnx").unlink()
    (folder / "m.onnx").write_text("old m.onnx")
    assert _contents(folder) == before and verify_output_set(folder / "m.onnx").complete  # manifest kept, no stage
    assert not (tmp_path / "elsewhere").exists()


def test_the_cleanup_of_leftovers_never_removes_an_input(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    temporary_named = folder / ".m.onnx.abcd1234.tmp"
    temporary_named.write_bytes(b"an input named like a temporary")
    staging_with_input = folder / f"{STAGING_PREFIX}k2j4h5g6"
    staging_with_input.mkdir()
    (staging_with_input / "model.pt").write_bytes(b"an input in a folder named like a staging folder")
    stale = folder / f"{STAGING_PREFIX}q1w2e3r4"
    stale.mkdir()
    outputs = OutputSet(folder, NAMES, inputs=(temporary_named, staging_with_input / "model.pt"))
    outputs.prepare()
    assert temporary_named.exists() and (staging_with_input / "model.pt").exists() and not stale.exists()
    with outputs.staging() as stage:
        for name in NAMES:
            (stage / name).write_text(name)
    assert temporary_named.exists() and (staging_with_input / "model.pt").exists()
