"""Package versions recorded in checkpoints, containers, reports and benchmark results."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["package_versions", "__version__"]

try:
    __version__ = metadata.version("albsnn-compress")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"


def package_versions() -> dict[str, str]:
    """Versions of python, this package and the libraries whose behaviour shapes results."""
    versions = {"python": platform.python_version(), "albsnn-compress": __version__}
    for name in ("torch", "numpy", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
