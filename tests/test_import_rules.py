"""The import directions of docs/architecture.md, read from the source with ``ast``.

Every ``import`` of the package is checked, those inside functions and under
``TYPE_CHECKING`` too: an import is a dependency whenever it runs. The rules are
an allow-list per area (a subpackage, a format folder or a top-level module):
an area may import itself, the foundation modules and the areas listed for it,
nothing else. So a new dependency is a decision written here and in the docs,
never an accident. tests/test_imports.py checks the same package at run time
(no cycle, rich only in the command line).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "albsnn_compress"

FOUNDATION = {"errors", "limits", "versions", "progress", "registry", "seeds"}
"""Small modules with no dependency of ours but ``errors``: any area may import them."""

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "versions": set(),
    "progress": set(),
    "registry": set(),
    "limits": set(),
    "seeds": set(),
    "snn": set(),
    "data": set(),
    "files": {"snn"},
    "binarize": {"snn"},
    "precision": {"snn", "binarize"},
    "storage": {"snn", "binarize", "precision"},
    "summary": {"snn", "binarize", "precision", "storage"},
    "operations": {"snn", "binarize", "precision", "storage"},
    "targets": {"snn", "binarize", "precision"},
    "checkpoint": {"snn", "binarize", "precision", "files"},
    "training": {"snn", "data", "binarize", "files", "checkpoint"},
    "search": {"snn", "data", "binarize", "precision", "storage", "training", "targets"},
    "formats": set(),  # the folder's docstring only
    "formats.bitpack": set(),
    "formats.container": {"snn", "binarize", "precision", "files", "formats.bitpack"},
    "formats.onnx": {"snn", "binarize", "precision", "files", "formats.bitpack"},
    "formats.nir": {"snn", "binarize", "precision", "files"},
    "formats.c": {"snn", "binarize", "precision", "files", "formats.bitpack"},
    "interop": {"snn", "data", "binarize", "checkpoint"},
    "model_file": {"snn", "files", "checkpoint", "formats.container"},
    "report": {"snn", "files", "storage", "search.result", "search.paired_drop"},
    # train --binarize adaptive: train_model's warm-up, then the search, written as a checkpoint
    "train_binarized": {"snn", "data", "binarize", "files", "checkpoint", "training", "search"},
    "pipeline": {
        "snn",
        "data",
        "binarize",
        "storage",
        "operations",
        "files",
        "checkpoint",
        "training",
        "search",
        "report",
        "formats.bitpack",
        "formats.container",
        "formats.onnx",
        "formats.nir",
        "formats.c",
    },  # fmt: skip
    "cli": {"*"},  # the top: everything; nothing imports it
    PACKAGE: {"*-cli"},  # the public API re-exports the library: everything but the command line
}
"""Which areas an area may import, besides itself and :data:`FOUNDATION`.

A dotted entry (``search.result``) allows that module only, not its whole area.
"""

FORBIDDEN_WITHIN: dict[str, set[str]] = {
    # A strategy is written against the StrategySession protocol; it never sees the machinery.
    "search.strategies": {"search.session", "search.run"},
    "search.protocol": {"search.session", "search.run", "search.strategies"},
}
"""Modules that must not import certain modules of their own area."""

THIRD_PARTY: dict[str, set[str]] = {
    "click": {"cli"},
    "rich": {"cli"},
    "onnx": {"formats.onnx"},
    "onnxruntime": {"formats.onnx"},
    "nir": {"formats.nir", "cli"},
    "nirtorch": {"formats.nir"},
    "matplotlib": {"report"},
}
"""Optional or presentation libraries, and the only areas that may import them."""


def area_of(module: str) -> str:
    """The area a dotted module name belongs to: ``albsnn_compress.formats.nir.read`` -> ``formats.nir``."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        raise ValueError(f"{module} is not in {PACKAGE}")
    if len(parts) == 1:
        return PACKAGE
    if parts[1] == "formats" and len(parts) > 2:
        return f"formats.{parts[2]}"
    return parts[1]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import statement in ``source``, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from albsnn_compress import limits` imports a module, `from albsnn_compress import compress` the root
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((node.lineno, submodule if _is_module(submodule) else node.module))
    return found


def _is_module(name: str) -> bool:
    """Whether the dotted ``name`` of ours is a module or package on disk (not a name defined in one)."""
    path = ROOT.joinpath(*name.split("."))
    return name.startswith(f"{PACKAGE}.") and (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file())


def _allows(importer_area: str, importer: str, target: str) -> bool:
    target_area = area_of(target)
    if target_area in (importer_area, *FOUNDATION):
        forbidden = FORBIDDEN_WITHIN.get(importer.removeprefix(f"{PACKAGE}."), set())
        return not any(target.removeprefix(f"{PACKAGE}.").startswith(name) for name in forbidden)
    allowed = ALLOWED[importer_area]
    if "*" in allowed or ("*-cli" in allowed and target_area != "cli"):
        return True
    relative = target.removeprefix(f"{PACKAGE}.")
    return target_area in allowed or any(relative == name or relative.startswith(f"{name}.") for name in allowed)


def violations(sources: dict[str, str]) -> list[str]:
    """Every import in ``sources`` (dotted module name -> its source) that breaks a rule, one line each."""
    problems = []
    for module, source in sorted(sources.items()):
        area = area_of(module)
        if area not in ALLOWED:
            problems.append(f"{module}: area {area!r} has no rule in ALLOWED; add one here and in docs/architecture.md")
            continue
        for line, target in imported_modules(source):
            top = target.split(".")[0]
            if top == PACKAGE and target != PACKAGE:
                if not _allows(area, module, target):
                    problems.append(f"{module}:{line} imports {target} ({area} -> {area_of(target)} is not allowed)")
            elif top in THIRD_PARTY and area not in THIRD_PARTY[top]:
                problems.append(f"{module}:{line} imports {top}, which only {sorted(THIRD_PARTY[top])} may import")
            elif target == PACKAGE and area != "cli":
                problems.append(f"{module}:{line} imports the package root (the public API); import the module itself")
    return problems


def package_sources() -> dict[str, str]:
    """Dotted module name -> source, for every module of the package."""
    sources = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text(encoding="utf-8")
    return sources


def test_the_package_keeps_the_import_directions_of_the_architecture() -> None:
    problems = violations(package_sources())
    assert not problems, "\n".join(problems)


def test_every_area_of_the_package_has_a_rule() -> None:
    areas = {area_of(name) for name in package_sources()}
    assert areas == set(ALLOWED)


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        (
            "albsnn_compress.snn.spec",
            "from albsnn_compress.formats.onnx.export import export_onnx",
            "snn -> formats.onnx is not allowed",
        ),
        (
            "albsnn_compress.formats.c.plan",
            "import albsnn_compress.search.estimators",
            "formats.c -> search is not allowed",
        ),
        ("albsnn_compress.formats.container.file", "from albsnn_compress.formats.nir import read", "formats.container"),
        ("albsnn_compress.report.build", "from albsnn_compress.search.run import compress", "report -> search"),
        ("albsnn_compress.pipeline", "from albsnn_compress.cli.main import cli", "pipeline -> cli is not allowed"),
        ("albsnn_compress", "import albsnn_compress.cli.main", "albsnn_compress -> cli is not allowed"),
        (
            "albsnn_compress.search.strategies",
            "def f():\n    from albsnn_compress.search.session import SearchSession",
            "search -> search is not allowed",
        ),
        ("albsnn_compress.training.trainer", "import rich.console", "imports rich, which only ['cli'] may import"),
        ("albsnn_compress.search.run", "import albsnn_compress", "imports the package root"),
        ("albsnn_compress.snn.spec", "from albsnn_compress import compress", "imports the package root"),
        ("albsnn_compress.newarea", "import torch", "area 'newarea' has no rule"),
    ],
)
def test_a_broken_rule_is_reported_with_the_module_and_line(module: str, source: str, message: str) -> None:
    (problem,) = violations({module: source})
    assert problem.startswith(module) and message in problem


def test_allowed_imports_pass() -> None:
    allowed = {
        "albsnn_compress.report.build": "from albsnn_compress.search.result import CompressionResult",
        "albsnn_compress.formats.onnx.export": "from albsnn_compress.formats.bitpack import pack_bits",
        "albsnn_compress.cli.main": "from albsnn_compress.pipeline import run\nimport click",
        "albsnn_compress.search.session": "from albsnn_compress.search.strategies import resolve_strategy",
        "albsnn_compress.snn.spec": "from albsnn_compress import limits",
    }
    assert violations(allowed) == []
