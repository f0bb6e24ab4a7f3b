"""Packaging: cli/ and formats/ install as albsnn_compress.cli/.formats, never as top-level modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_cli_and_formats_under_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("albsnn_compress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"albsnn_compress", wheel.name.split("-py")[0] + ".dist-info"}
    for module in ("albsnn_compress/cli/main.py", "albsnn_compress/formats/container.py", "albsnn_compress/report/schema.py", "albsnn_compress/py.typed"):
        assert module in names
    entry_points = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py')[0]}.dist-info/entry_points.txt").decode()
    assert "albsnn-compress = albsnn_compress.cli.main:main" in entry_points


def test_editable_install_imports_the_mapped_packages() -> None:
    import albsnn_compress.cli.main
    import albsnn_compress.formats.container

    assert Path(albsnn_compress.cli.main.__file__).resolve() == ROOT / "cli" / "main.py"
    assert Path(albsnn_compress.formats.container.__file__).resolve() == ROOT / "formats" / "container.py"
    assert subprocess.run([sys.executable, "-c", "import cli"], capture_output=True, cwd="/").returncode != 0
    assert subprocess.run([sys.executable, "-c", "import formats"], capture_output=True, cwd="/").returncode != 0
