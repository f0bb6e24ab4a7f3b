"""Atomic file writes: the target is always exactly the old or the new content.

The recipe is the one pip and python-atomicwrites use: a temporary file in the
target's own folder (same file system, so the rename is atomic), write, flush,
``os.fsync``, ``os.replace``, then fsync the folder so the rename itself is
durable. On any failure the temporary file is removed and the old target stays.

Only a regular file is ever replaced: a symbolic link, a FIFO, a device
(``/dev/full``), a socket or a folder at the target's name is refused with a
one-line :class:`~albsnn_compress.errors.OutputError` naming the rule
(:func:`~albsnn_compress.files.output_paths.check_output_target`), before the
temporary file is made and again just before the rename, so the link is never
followed and the node never replaced by a regular file.

The temporary file of ``NAME`` is ``.NAME.XXXXXXXX.tmp`` (eight random characters
from ``tempfile``). Only a killed process (SIGKILL, power loss) leaves one behind;
:func:`remove_stale_temporaries` removes those of given names, and a command calls
it on its output folder before writing there again.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from albsnn_compress.files.output_paths import check_output_target

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "temporary_pattern",
    "remove_stale_temporaries",
    "fsync_directory",
    "current_umask",
]

_TEMP_SUFFIX = ".tmp"
_RANDOM_PART = "[a-z0-9_]{8}"  # tempfile's name sequence: 8 characters of this set


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(folder: Path) -> None:
    """Make a completed rename durable; silently skipped where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary stream whose content replaces ``path`` only on success.

    Raises:
        OutputError: ``path`` is a symbolic link, a folder or not a regular file (checked
            before writing and again before the rename; the temporary file is removed).

    Example:
        >>> with atomic_write("out.bin") as f:  # doctest: +SKIP
        ...     f.write(b"data")
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    check_output_target(target)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=_TEMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual file mode
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        check_output_target(target)  # again: a link or a node may have appeared while writing
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(folder)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as stream:
        stream.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def temporary_pattern(name: str) -> re.Pattern[str]:
    """The file names :func:`atomic_write` gives its temporary files for a target called ``name``."""
    return re.compile(re.escape(f".{name}.") + _RANDOM_PART + re.escape(_TEMP_SUFFIX))


def remove_stale_temporaries(
    folder: str | os.PathLike[str],
    names: list[str] | tuple[str, ...],
    *,
    keep: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Remove the temporary files a killed :func:`atomic_write` left in ``folder`` for targets ``names``.

    Only regular files whose whole name matches :func:`temporary_pattern` of one of
    ``names`` are removed (nothing else, no symlink, no folder), and never one that is
    the same file as a path in ``keep`` (the run's inputs). Call it only where no other
    process is writing those names at the same time.

    Returns:
        The paths removed.
    """
    patterns = [temporary_pattern(name) for name in names]
    kept = set()
    for item in keep:
        with contextlib.suppress(OSError):
            info = os.stat(item)
            kept.add((info.st_dev, info.st_ino))
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not any(pattern.fullmatch(entry.name) for pattern in patterns):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in kept:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return removed
