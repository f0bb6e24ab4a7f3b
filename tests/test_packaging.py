"""Packaging: one top-level package whose path on disk is its import path, templates shipped as data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_one_package_with_its_templates(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("albsnn_compress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"albsnn_compress", wheel.name.split("-py")[0] + ".dist-info"}
    for module in (
        "albsnn_compress/cli/main.py",
        "albsnn_compress/formats/container/file.py",
        "albsnn_compress/report/schema.py",
        "albsnn_compress/formats/c/templates/albsnn_kernels.c",
        "albsnn_compress/py.typed",
    ):
        assert module in names
    entry_points = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py')[0]}.dist-info/entry_points.txt").decode()
    assert "albsnn-compress = albsnn_compress.cli.main:main" in entry_points


def test_the_path_on_disk_is_the_import_path() -> None:
    import albsnn_compress.cli.main
    import albsnn_compress.formats.container.file

    assert Path(albsnn_compress.cli.main.__file__).resolve() == ROOT / "albsnn_compress" / "cli" / "main.py"
    assert (
        Path(albsnn_compress.formats.container.file.__file__).resolve()
        == ROOT / "albsnn_compress" / "formats" / "container" / "file.py"
    )
    assert "package-dir" not in (ROOT / "pyproject.toml").read_text()
    assert subprocess.run([sys.executable, "-c", "import cli"], capture_output=True, cwd="/").returncode != 0
    assert subprocess.run([sys.executable, "-c", "import formats"], capture_output=True, cwd="/").returncode != 0
