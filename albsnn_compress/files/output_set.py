"""The files of one run, written so that a folder never passes for a result it is not.

A compress run writes several files into one folder (container, ONNX, report).
Written one by one in place, an interrupted run would leave a new ``.albsnn``
beside an old ``.onnx`` and report: each file whole, the set mixed. So:

1. **Before any work** (:meth:`OutputSet.prepare`): the folder can be written
   (:func:`~albsnn_compress.files.output_paths.check_output_folder`), every target
   name (``manifest.json`` included) obeys the output rules
   (:func:`~albsnn_compress.files.output_paths.check_output_target`: it is none of the
   run's ``inputs``, not a symbolic link, not a folder, FIFO or device), an existing
   ``manifest.json`` is ours, and what a killed earlier run left behind (staging
   folders ``.albsnn-staging-*``, temporaries ``.NAME.XXXXXXXX.tmp`` of our names) is
   removed (never an input, nor a staging folder holding one).
2. **Staging** (:meth:`OutputSet.staging`): every file is written into a fresh
   ``.albsnn-staging-XXXXXXXX/`` folder inside the output folder (same file
   system). Meanwhile the previous complete set, with its manifest, is untouched;
   an exception removes the staging folder.
3. **Commit**, once every file is complete: the rules are checked again on every
   name (a link planted during a long run is refused with the old set intact), the
   old ``manifest.json`` is removed,
   each staged file is renamed into place (``os.replace``: microseconds), and the
   new ``manifest.json`` is written last, atomically: names, byte sizes and
   SHA-256 of the files, and the package versions.

So a folder whose ``manifest.json`` matches its files (:func:`verify_output_set`)
is one complete run; a folder without one is not known to be (an interrupted
commit, an older version, or files from elsewhere). ``albsnn-compress report``
and ``inspect`` say so.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albsnn_compress.errors import OutputError, OutputSetError, StrictJSONError
from albsnn_compress.files.atomic import atomic_write_text, fsync_directory, remove_stale_temporaries
from albsnn_compress.files.output_paths import (
    PROBE_PREFIX,
    check_output_folder,
    check_output_target,
    writing,
)
from albsnn_compress.files.strict_json import strict_loads
from albsnn_compress.versions import package_versions

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "MANIFEST_VERSION",
    "STAGING_PREFIX",
    "OutputSet",
    "OutputSetCheck",
    "read_manifest",
    "verify_output_set",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "albsnn-compress/outputs"
MANIFEST_VERSION = 1
STAGING_PREFIX = ".albsnn-staging-"
MAX_MANIFEST_BYTES = 1 << 20
_NAME_LIMIT = 255
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"[A-Za-z0-9_]{8}", re.ASCII)
_PROBE = re.compile(re.escape(PROBE_PREFIX) + r"[a-z0-9_]{8}\.tmp", re.ASCII)


def _plain_name(name: object) -> bool:
    """A file name of the folder itself: no separator or NUL, not hidden (ours start with a dot), not too long."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= _NAME_LIMIT
        and not name.startswith(".")
        and not any(c in name for c in "/\\\x00")
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _holds_an_input(path: str, inputs: tuple[Path, ...]) -> bool:
    """Whether the folder ``path`` holds (at any depth) one of ``inputs``."""
    inside = os.path.realpath(path) + os.sep
    return any(os.path.realpath(item).startswith(inside) for item in inputs)


def _remove_leftovers(folder: Path, names: list[str], inputs: tuple[Path, ...] = ()) -> None:
    """Staging folders, probe files and our names' temporaries that a killed run left in ``folder``.

    Never an input, nor a staging folder that holds one.
    """
    remove_stale_temporaries(folder, [*names, MANIFEST_NAME], keep=inputs)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if (
                _STAGING.fullmatch(entry.name)
                and entry.is_dir(follow_symlinks=False)
                and not _holds_an_input(entry.path, inputs)
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif _PROBE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


@dataclass
class OutputSet:
    """The files ``names`` of one run in ``folder``, made from ``inputs``; see the module docstring.

    Attributes:
        folder: where the set lands.
        names: the file names of the set (plain, distinct, not hidden, not ``manifest.json``).
        inputs: the files the run reads: no name of the set may be one of them (same path,
            hard link or symbolic link), and the cleanup of leftovers never removes one.

    Example:
        >>> outputs = OutputSet(Path("out"), ("model.albsnn", "report.json"))  # doctest: +SKIP
        >>> outputs.prepare()                     # before the work  # doctest: +SKIP
        >>> with outputs.staging() as stage:      # after it  # doctest: +SKIP
        ...     write_container(stage / "model.albsnn", model)
        ...     ...
        >>> outputs.paths["model.albsnn"]         # out/model.albsnn  # doctest: +SKIP
    """

    folder: Path
    names: tuple[str, ...]
    inputs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.names = tuple(self.names)
        self.inputs = tuple(Path(item) for item in self.inputs)
        bad = [name for name in self.names if not _plain_name(name) or name == MANIFEST_NAME]
        if bad or len(set(self.names)) != len(self.names):
            raise OutputError(
                errno.EINVAL,
                f"cannot write {self.folder}: output names {list(self.names)} must be distinct "
                f"file names, not hidden, other than {MANIFEST_NAME}; rename the input",
            )

    @property
    def paths(self) -> dict[str, Path]:
        """Where each file ends up."""
        return {name: self.folder / name for name in self.names}

    def prepare(self) -> None:
        """Check, before any work, that the set can be written; remove what a killed run left.

        Raises:
            OutputError: the folder cannot be written, or a target name breaks an output
                rule (an input, a symbolic link, a folder, not a regular file).
            OutputSetError: the folder holds a ``manifest.json`` that is not ours.
        """
        check_output_folder(self.folder, parents=True)
        self._check_targets()
        manifest = self.folder / MANIFEST_NAME
        if manifest.exists():
            try:
                read_manifest(manifest)
            except OutputSetError as exc:
                raise OutputSetError(f"{exc}; it would be replaced: move it or choose another output folder") from exc
        if self.folder.is_dir():
            with writing(self.folder):
                _remove_leftovers(self.folder, list(self.names), self.inputs)

    def _check_targets(self) -> None:
        """Every name of the set, and the manifest's, against the output rules (nothing followed)."""
        for name in (*self.names, MANIFEST_NAME):
            check_output_target(
                self.folder / name,
                self.inputs,
                fix="choose another output folder",
                folder_fix="move it or choose another output folder",
            )

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder for the files; on a clean exit they replace the old set, manifest last.

        Raises:
            OutputError: a file cannot be written, staged or renamed into place.
            ValueError: the block did not write every name (a bug in the caller).
        """
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(self.folder, list(self.names), self.inputs)
            stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        try:
            yield stage
            self._commit(stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _commit(self, stage: Path) -> None:
        missing = [name for name in self.names if not (stage / name).is_file()]
        if missing:
            raise ValueError(f"the run wrote no {missing} into {stage}")
        files = {name: {"bytes": (stage / name).stat().st_size, "sha256": _sha256(stage / name)} for name in self.names}
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "version": MANIFEST_VERSION,
            "files": files,
            "versions": package_versions(),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        manifest_path = self.folder / MANIFEST_NAME
        self._check_targets()  # again, with the old set still whole: the run may have been long
        with writing(manifest_path):
            manifest_path.unlink(missing_ok=True)  # from here on the folder is not a complete set ...
            fsync_directory(self.folder)
            for name in self.names:
                os.replace(stage / name, self.folder / name)
            atomic_write_text(manifest_path, text)  # ... until this rename
        fsync_directory(self.folder)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a ``manifest.json``.

    Raises:
        OutputSetError: the file cannot be read, is over 1 MiB, is not strict JSON, or
            does not hold exactly ``schema``, ``version``, ``files`` (plain names to
            ``{"bytes", "sha256"}``) and ``versions``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise OutputSetError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise OutputSetError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes, not an albsnn-compress output manifest")
    try:
        value = strict_loads(data.decode("utf-8"), max_depth=4, max_int_digits=20)
    except (UnicodeDecodeError, StrictJSONError, ValueError) as exc:
        raise OutputSetError(
            f"{path}: not an albsnn-compress output manifest (not strict JSON: {str(exc)[:80]})"
        ) from exc
    if not isinstance(value, dict) or value.get("schema") != MANIFEST_SCHEMA:
        raise OutputSetError(f'{path}: not an albsnn-compress output manifest (no "schema": "{MANIFEST_SCHEMA}")')
    if value.get("version") != MANIFEST_VERSION or type(value.get("version")) is not int:
        raise OutputSetError(
            f"{path}: output manifest version {str(value.get('version'))[:20]} is not {MANIFEST_VERSION}, "
            "the one this albsnn-compress reads"
        )
    if set(value) != {"schema", "version", "files", "versions"}:
        raise OutputSetError(
            f"{path}: output manifest keys {sorted(value)[:8]} are not schema, version, files, versions"
        )
    files, versions = value["files"], value["versions"]
    if not isinstance(versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise OutputSetError(f"{path}: output manifest 'versions' is not an object of strings")
    if not isinstance(files, dict) or not files:
        raise OutputSetError(f"{path}: output manifest 'files' is not a non-empty object")
    for name, entry in files.items():
        if not _plain_name(name) or name == MANIFEST_NAME:
            raise OutputSetError(f"{path}: output manifest lists {name[:40]!r}, not a plain file name of this folder")
        if (
            not isinstance(entry, dict)
            or set(entry) != {"bytes", "sha256"}
            or type(entry["bytes"]) is not int
            or entry["bytes"] < 0
            or not isinstance(entry["sha256"], str)
            or not _SHA256.fullmatch(entry["sha256"])
        ):
            raise OutputSetError(
                f'{path}: output manifest entry {name!r} is not {{"bytes": int >= 0, "sha256": 64 hex digits}}'
            )
    return value


@dataclass
class OutputSetCheck:
    """What :func:`verify_output_set` found.

    Attributes:
        complete: the folder's manifest lists the file and every file it lists matches.
        manifest: the manifest's path, or ``None`` when the folder has none.
        problem: why the set is not complete, one line (``None`` when it is, or when the
            manifest does not list the file: it is not one of the run's outputs).
        files: how many files the manifest lists (0 without one).
    """

    complete: bool
    manifest: Path | None
    problem: str | None
    files: int = 0


def _printable(text: str) -> str:
    """``text`` with what a terminal would interpret escaped (names in a manifest are the file's, not ours)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def verify_output_set(path: str | os.PathLike[str]) -> OutputSetCheck:
    """Whether ``path`` belongs to one complete run: its folder's manifest lists it and matches every file.

    Each listed file must be a regular file (not a symlink) of the recorded size and SHA-256.
    ``problem`` is one printable line (control characters escaped).
    """
    check = _verify(Path(path))
    if check.problem is not None:
        check.problem = _printable(check.problem)
    return check


def _verify(path: Path) -> OutputSetCheck:
    folder = path.parent
    manifest_path = folder / MANIFEST_NAME
    if not os.path.lexists(manifest_path):
        return OutputSetCheck(
            False,
            None,
            f"{folder} has no {MANIFEST_NAME}, so it is not known to hold one complete "
            "compress run (interrupted, written by an older version, or gathered by hand)",
        )
    try:
        manifest = read_manifest(manifest_path)
    except OutputSetError as exc:
        return OutputSetCheck(False, manifest_path, str(exc))
    files = manifest["files"]
    if path.name not in files:
        return OutputSetCheck(False, manifest_path, None, len(files))
    for name, entry in sorted(files.items()):
        member = folder / name
        try:
            info = os.lstat(member)
            same = stat.S_ISREG(info.st_mode) and info.st_size == entry["bytes"] and _sha256(member) == entry["sha256"]
        except OSError:
            return OutputSetCheck(
                False,
                manifest_path,
                f"{member} is missing or unreadable though {manifest_path} lists it: "
                "not one complete run; rerun compress",
                len(files),
            )
        if not same:
            return OutputSetCheck(
                False,
                manifest_path,
                f"{member} is not the file {manifest_path} lists (changed or from "
                "another run): not one complete run; rerun compress",
                len(files),
            )
    return OutputSetCheck(True, manifest_path, None, len(files))
