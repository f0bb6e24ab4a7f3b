"""docs/architecture.md is the map: its module tree lists exactly the package's Python files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
_TREE_HEADING = "## The tree"
_INDENT = 4  # characters per level: "│   " or "├── "


def tree_block(text: str) -> list[str]:
    """The lines of the first code block after the tree heading."""
    after = text.split(_TREE_HEADING, 1)[1]
    block = after.split("```", 2)[1]
    return block.splitlines()[1:]  # the first line is the fence's language tag


def tree_paths(lines: list[str]) -> set[str]:
    """Every file path the drawn tree names (folders end in ``/`` and open a level)."""
    folders: list[str] = []
    paths = set()
    for line in lines:
        match = re.match(r"^([│├└─\s]*)(\S+)", line)
        if not match or not match.group(2).strip():
            continue
        depth, name = len(match.group(1)) // _INDENT, match.group(2)
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            paths.add("/".join([*folders, name]))
    return paths


def test_the_tree_in_docs_equals_the_package_files() -> None:
    drawn = {path for path in tree_paths(tree_block(DOC.read_text(encoding="utf-8"))) if path.endswith(".py")}
    actual = {path.relative_to(ROOT).as_posix() for path in (ROOT / "albsnn_compress").rglob("*.py")}
    assert drawn == actual, (
        f"missing from the doc: {sorted(actual - drawn)}; not in the package: {sorted(drawn - actual)}"
    )


def test_the_tree_parser_reads_nesting() -> None:
    lines = [
        "pkg/",
        "├── a.py            job",
        "├── sub/",
        "│   ├── b.py        job",
        "│   └── deeper/",
        "│       └── c.py",
        "└── d.py",
    ]
    assert tree_paths(lines) == {"pkg/a.py", "pkg/sub/b.py", "pkg/sub/deeper/c.py", "pkg/d.py"}
