"""Output locations: proved writable and safe before any work starts, and every write error as one line.

A run that trains for an hour and then finds ``-o`` under a read-only mount has
wasted the hour. So each command that writes checks its output location first
(:func:`check_output_file` for one file, :func:`check_output_folder` for a
folder): the path is not the wrong kind (a folder where a file goes, or the
other way round), no part of it is a regular file, the folder that will hold the
file exists (or, for a folder, its nearest existing ancestor), and a probe file
can be created and removed there. The probe is the only honest test:
``os.access`` ignores read-only mounts and access-control lists, and root passes
every permission bit. Nothing is created: a run refused later for another reason
leaves no empty folder behind, and the probe files a killed run left in a probed
folder (``.albsnn-probe-XXXXXXXX.tmp``) are removed.

Every output file also obeys three rules, checked on its last path component
without following it (:func:`check_output_target`; :func:`check_output_file`,
the output sets and the atomic writer all call it), each refusal one line that
names the path, the rule and the fix:

1. **not an input** (:data:`RULE_INPUT`): a path that is the same file as an input
   of the run (the same path, a hard link to it, a symbolic link to it) is refused,
   so ``export m.albsnn -o m.albsnn`` or a run whose output set holds a name equal
   to its input never replaces what it reads;
2. **no symbolic link** (:data:`RULE_SYMLINK`): a link at the file's own name is
   never followed (which would write outside the folder) nor replaced; links in
   the folders on the way are the user's choice of folder and are followed;
3. **regular files only** (:data:`RULE_REGULAR`): a FIFO, a device (``/dev/full``),
   a socket or a folder at the name is refused; nothing but a regular file is ever
   replaced.

A write can still fail later (the disk fills up, a mount goes away):
:func:`writing` turns any ``OSError`` raised while writing into the same one-line
:class:`OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

from albsnn_compress.errors import OutputError

__all__ = [
    "PROBE_PREFIX",
    "RULE_INPUT",
    "RULE_REGULAR",
    "RULE_SYMLINK",
    "check_output_file",
    "check_output_folder",
    "check_output_target",
    "output_error",
    "writing",
]

PROBE_PREFIX = ".albsnn-probe-"
_PROBE = re.compile(re.escape(PROBE_PREFIX) + r"[a-z0-9_]{8}\.tmp", re.ASCII)  # tempfile's 8 random characters

RULE_INPUT = "an output never replaces an input"
RULE_SYMLINK = "an output never follows or replaces a symbolic link"
RULE_REGULAR = "outputs are written only as regular files"

PathLike: TypeAlias = str | os.PathLike[str]


_FIXES = {
    errno.EACCES: "permission denied; choose a folder you can write, or change its permissions",
    errno.EPERM: "permission denied; choose a folder you can write, or change its permissions",
    errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another disk",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EISDIR: "it is a folder; pass a file name",
    errno.ENOENT: "a folder on the way does not exist; create it first or choose another path",
}


def _kind(path: Path, target: Path) -> str | None:
    """``"folder"``, ``"file"`` (anything else that exists) or ``None``; an unreadable path is an
    :class:`OutputError`."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # e.g. a folder on the way without search permission
        raise output_error(target, exc) from exc
    return "folder" if stat.S_ISDIR(mode) else "file"


def _file_on_the_way(path: Path, target: Path | None = None) -> Path | None:
    """The first ancestor of ``path`` (or ``path`` itself) that exists but is not a folder."""
    for part in reversed([path, *path.parents]):
        if _kind(part, target or path) == "file":
            return part
    return None


def output_error(path: PathLike, exc: OSError, where: Path | None = None) -> OutputError:
    """The one-line :class:`OutputError` for ``exc``, raised while writing ``path`` (in folder ``where``)."""
    path = Path(path)
    if exc.errno == errno.ENOTDIR:
        try:
            blocking = _file_on_the_way(path.parent)
        except OutputError:
            blocking = None
        reason = f"{blocking} is a file, not a folder" if blocking is not None else "a part of the path is not a folder"
        return OutputError(exc.errno, f"cannot write {path}: {reason}; choose another output path")
    fix = _FIXES.get(exc.errno or 0, f"{exc.strerror or exc}; choose another output path")
    place = f" (nothing can be created in {where})" if where is not None and where not in (path, path.parent) else ""
    return OutputError(exc.errno, f"cannot write {path}{place}: {fix}")


def _shown(text: str) -> str:
    """``text`` with what a terminal would interpret escaped (a link's target is anybody's text)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _input_named(path: Path, info: os.stat_result, inputs: Iterable[PathLike]) -> str | None:
    """How ``path`` (whose ``lstat`` is ``info``) is one of ``inputs``, or ``None`` when it is none of them."""
    try:
        resolved = os.stat(path) if stat.S_ISLNK(info.st_mode) else info
    except OSError:  # a dangling link is no input; the link rule refuses it
        return None
    for item in inputs:
        try:
            other = os.stat(item)
        except OSError:  # an input that is gone cannot be replaced
            continue
        if (other.st_dev, other.st_ino) != (resolved.st_dev, resolved.st_ino):
            continue
        if os.path.abspath(path) == os.path.abspath(item):
            return f"it is the input {item}"
        if stat.S_ISLNK(info.st_mode):
            return f"it is a symbolic link to the input {item}"
        return f"it is the same file as the input {item} (a hard link to it, or the same folder by another path)"
    return None


def check_output_target(
    path: PathLike,
    inputs: Iterable[PathLike] = (),
    *,
    fix: str = "choose another output path",
    folder_fix: str = "pass a file name",
) -> None:
    """Refuse a file name an output must not be written to; see the rules in the module docstring.

    Only the last component of ``path`` is looked at, never followed (``os.lstat``): a
    missing name passes, an existing regular file that is no input passes (it is
    replaced later).

    Args:
        path: where a file will be written.
        inputs: the files the run reads; ``path`` must be none of them (compared by
            device and inode, so a hard link or another spelling counts).
        fix: the advice ending the one-line message.
        folder_fix: the advice when a folder is at ``path``.

    Raises:
        OutputError: ``path`` is an input, a symbolic link, a folder or not a regular file.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there yet (a file on the way is the caller's refusal)
    except OSError as exc:
        raise output_error(path, exc) from exc
    same = _input_named(path, info, inputs)
    if same is not None:
        raise OutputError(errno.EEXIST, f"cannot write {path}: {same} (rule: {RULE_INPUT}); {fix}")
    if stat.S_ISLNK(info.st_mode):
        try:
            points = f" to {_shown(os.readlink(path))}"
        except OSError:
            points = ""
        raise OutputError(
            errno.ELOOP,
            f"cannot write {path}: it is a symbolic link{points} (rule: {RULE_SYMLINK}); remove the link or {fix}",
        )
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(errno.EISDIR, f"cannot write {path}: it is a folder; {folder_fix}")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(
            errno.EINVAL,
            f"cannot write {path}: it is {_special_kind(info.st_mode)}, not a regular file (rule: {RULE_REGULAR}); "
            f"{fix}",
        )


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into :func:`output_error` for ``path``.

    Wrap writes only: a read error inside the block would be reported as a write error.
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(path, exc) from exc


def _probe(folder: Path, target: Path) -> None:
    """Create and remove a file in ``folder``; an ``OSError`` becomes :class:`OutputError` naming ``target``."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=PROBE_PREFIX, suffix=".tmp")
    except OSError as exc:
        raise output_error(target, exc, folder) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    _remove_stale_probes(folder)


def _remove_stale_probes(folder: Path) -> None:
    """Remove the probe files a killed process left in ``folder`` (regular files of exactly that name only).

    Harmless to a process probing the same folder now: its probe was created already, and it
    ignores a failed removal.
    """
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if _PROBE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def check_output_file(path: PathLike, *, inputs: Iterable[PathLike] = ()) -> Path:
    """Check, before any work, that a file can be written at ``path`` (a regular file there is replaced).

    Args:
        path: the output file.
        inputs: the files the command reads; ``path`` must not be one of them.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a folder, a part of it is a file, its folder does not
            exist, a file cannot be created there (permissions, a read-only disk), or
            it breaks a rule of :func:`check_output_target` (an input, a symbolic link,
            not a regular file).
    """
    path = Path(path)
    folder = path.parent
    blocking = _file_on_the_way(folder, path)
    if blocking is not None:
        raise OutputError(
            errno.ENOTDIR, f"cannot write {path}: {blocking} is a file, not a folder; choose another output path"
        )
    check_output_target(path, inputs)  # before the probe: nothing is created beside /dev/full
    if _kind(folder, path) != "folder":
        raise OutputError(errno.ENOENT, f"cannot write {path}: folder {folder} does not exist; create it first")
    _probe(folder, path)
    return path


def check_output_folder(path: PathLike, *, parents: bool = True) -> Path:
    """Check, before any work, that ``path`` is, or can be made, a folder files can be written into.

    A symbolic link to a folder is followed (the user chose that folder; every file is
    then checked on its own name by :func:`check_output_target`); a link that points
    nowhere is refused.

    Args:
        path: the output folder; it need not exist yet (nothing is created here).
        parents: missing ancestors may be created by the writer (``mkdir -p``); when
            false, the folder's parent must exist.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` or one of its ancestors is a file, ``path`` is a dangling
            symbolic link, the parent is missing (``parents=False``), or a file cannot be
            created in the folder or, where it does not exist yet, in its nearest existing
            ancestor.
    """
    path = Path(path)
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputError(
            errno.ENOENT,
            f"cannot write into {path}: it is a symbolic link to {_shown(os.readlink(path))}, which does not exist; "
            "remove the link, create the folder it names, or choose another output folder",
        )
    blocking = _file_on_the_way(path, path)
    if blocking == path:
        raise OutputError(
            errno.ENOTDIR, f"cannot write into {path}: it is a file, not a folder; choose another output folder"
        )
    if blocking is not None:
        raise OutputError(
            errno.ENOTDIR, f"cannot write into {path}: {blocking} is a file, not a folder; choose another output folder"
        )
    if not parents and _kind(path, path) is None and _kind(path.parent, path) is None:
        raise OutputError(
            errno.ENOENT, f"cannot write into {path}: folder {path.parent} does not exist; create it first"
        )
    existing = next(part for part in (path, *path.parents) if _kind(part, path) == "folder")
    _probe(existing, path)
    return path
