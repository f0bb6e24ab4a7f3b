"""No import cycle anywhere in the package, and rich only in the command line.

Every module is imported alone, in a process where none of the package is
loaded yet: a cycle shows as an ImportError for whichever module of it comes
first. To keep this fast, one helper interpreter imports the slow third-party
libraries (torch, numpy) once and forks a child per module; none of our
modules is in ``sys.modules`` when a child starts. The library never prints,
so nothing outside ``albsnn_compress.cli`` may load rich, directly or not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]

_CHILD_SCRIPT = r"""
import importlib, json, os, sys, traceback
import numpy, onnx, torch  # third party, loaded once before the forks
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
            error = None
        except BaseException as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        rich = sorted(m for m in sys.modules if m == "rich" or m.startswith("rich."))[:1]
        print(json.dumps({"module": name, "error": error, "rich": bool(rich)}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def package_modules() -> list[str]:
    """Every module of the package, named as it is imported (the path on disk is the import path)."""
    names = []
    for path in sorted((ROOT / "albsnn_compress").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running it is its job
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


@pytest.fixture(scope="module")
def imports() -> dict[str, dict]:
    modules = package_modules()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_SCRIPT, *modules], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    results = {entry["module"]: entry for entry in map(json.loads, done.stdout.splitlines())}
    assert sorted(results) == sorted(modules), done.stderr[-3000:]
    return results


def test_the_package_is_found_whole() -> None:
    modules = package_modules()
    for expected in (
        "albsnn_compress.search.session",
        "albsnn_compress.cli.main",
        "albsnn_compress.formats.container.file",
    ):
        assert expected in modules


def test_every_module_imports_alone(imports: dict[str, dict]) -> None:
    failed = {name: entry["error"] for name, entry in imports.items() if entry["error"]}
    assert not failed, "\n".join(f"{name}: {error}" for name, error in failed.items())


def test_rich_is_loaded_by_the_command_line_only(imports: dict[str, dict]) -> None:
    library = [name for name, entry in imports.items() if entry["rich"] and not name.startswith("albsnn_compress.cli")]
    assert not library, f"these modules load rich (move the printing to cli/): {library}"
