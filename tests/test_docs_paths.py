"""Every source path the docs and the README cite exists (a moved module must take its mentions along)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PLACEHOLDER = re.compile(r"\b[A-Z]{3,}\b")  # benchmarks/results/NAME.json stands for any result
_CITED = re.compile(r"(?<![\w/.-])((?:albsnn_compress|benchmarks|tests|scripts)/[\w/.-]+\.(?:py|c|h|md|json|sh))")


def cited_paths() -> dict[str, set[str]]:
    """Path -> the documents citing it, from README.md and docs/*.md."""
    cited: dict[str, set[str]] = {}
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in _CITED.finditer(document.read_text(encoding="utf-8")):
            if not _PLACEHOLDER.search(match.group(1)):
                cited.setdefault(match.group(1), set()).add(document.name)
    return cited


def test_every_cited_source_path_exists() -> None:
    missing = {path: sorted(docs) for path, docs in cited_paths().items() if not (ROOT / path).exists()}
    assert not missing, f"cited but missing (path: documents): {missing}"


def test_the_scan_finds_citations() -> None:
    assert "albsnn_compress/formats/bitpack.py" in cited_paths()
