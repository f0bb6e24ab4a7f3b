"""Where a benchmark result came from: the commit, whether the tree was dirty, the UTC date, the command.

:func:`benchmarks.machine.write_result` adds :func:`provenance` to every result
JSON under ``provenance``::

    {"commit": "83b771b...", "dirty": true, "date_utc": "2026-11-27T09:30:00Z",
     "argv": ["--quick"], "command": "python -m benchmarks.bench_container --quick"}

``commit`` is ``git rev-parse HEAD``; ``dirty`` is true when ``git status
--porcelain`` lists anything, so the numbers may come from code that differs from
the commit; both are ``null`` outside a git checkout. Paths in ``argv`` and
``command`` are written relative to the repository root when they lie in its
folder or next to it (``/work/shared/datasets`` becomes ``../shared/datasets``),
so a result never records a machine's absolute layout.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "provenance", "repo_relative"]

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    """Stdout of ``git args`` in the repository, or ``None`` where git or the checkout is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


SIBLINGS = ("shared", "runs")
"""Folders beside the repository that commands name (the data, long runs' outputs): kept as ``../NAME/...``."""


def repo_relative(text: str) -> str:
    """``text`` relative to the repository root if it is an absolute path in it or in a sibling folder, else unchanged.

    Only the repository and :data:`SIBLINGS` count, wherever the clone lives: a path
    elsewhere (a temporary folder beside a clone in ``/tmp``) stays absolute.
    """
    if not os.path.isabs(text):
        return text
    path = Path(os.path.normpath(text))
    places = [ROOT, *(ROOT.parent / name for name in SIBLINGS)]
    if not any(path == place or place in path.parents for place in places):
        return text
    return os.path.relpath(path, ROOT)


def provenance(module: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Commit, dirty flag, UTC date, arguments and command line of this run of ``python -m module``.

    Args:
        module: the benchmark's module, e.g. ``benchmarks.bench_container``.
        argv: its command-line arguments (default ``sys.argv[1:]``).
    """
    arguments = [repo_relative(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain")
    return {
        "commit": commit.strip() if commit else None,
        "dirty": bool(status.strip()) if status is not None else None,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "argv": arguments,
        "command": shlex.join(["python", "-m", module, *arguments]),
    }
