"""Output locations: proved writable before any work starts, and every write error as one line.

A run that trains for an hour and then finds ``-o`` under a read-only mount has
wasted the hour. So each command that writes checks its output location first
(:func:`check_output_file` for one file, :func:`check_output_folder` for a
folder): the path is not the wrong kind (a folder where a file goes, or the
other way round), no part of it is a regular file, the folder that will hold the
file exists (or, for a folder, its nearest existing ancestor), and a probe file
can be created and removed there. The probe is the only honest test:
``os.access`` ignores read-only mounts and access-control lists, and root passes
every permission bit. Nothing is created: a run refused later for another reason
leaves no empty folder behind.

A write can still fail later (the disk fills up, a mount goes away):
:func:`writing` turns any ``OSError`` raised while writing into the same one-line
:class:`OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from albsnn_compress.errors import OutputError

__all__ = ["PROBE_PREFIX", "check_output_file", "check_output_folder", "output_error", "writing"]

PROBE_PREFIX = ".albsnn-probe-"


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


def output_error(path: str | os.PathLike[str], exc: OSError, where: Path | None = None) -> OutputError:
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


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
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


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be written at ``path`` (it is replaced if it exists).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a folder, a part of it is a file, its folder does not
            exist, or a file cannot be created there (permissions, a read-only disk).
    """
    path = Path(path)
    folder = path.parent
    blocking = _file_on_the_way(folder, path)
    if blocking is not None:
        raise OutputError(
            errno.ENOTDIR, f"cannot write {path}: {blocking} is a file, not a folder; choose another output path"
        )
    if _kind(path, path) == "folder":
        raise OutputError(errno.EISDIR, f"cannot write {path}: it is a folder; pass a file name")
    if _kind(folder, path) != "folder":
        raise OutputError(errno.ENOENT, f"cannot write {path}: folder {folder} does not exist; create it first")
    _probe(folder, path)
    return path


def check_output_folder(path: str | os.PathLike[str], *, parents: bool = True) -> Path:
    """Check, before any work, that ``path`` is, or can be made, a folder files can be written into.

    Args:
        path: the output folder; it need not exist yet (nothing is created here).
        parents: missing ancestors may be created by the writer (``mkdir -p``); when
            false, the folder's parent must exist.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` or one of its ancestors is a file, the parent is missing
            (``parents=False``), or a file cannot be created in the folder or, where it
            does not exist yet, in its nearest existing ancestor.
    """
    path = Path(path)
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
