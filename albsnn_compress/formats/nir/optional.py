"""NIR without importing it: the entry points load ``nir`` (and h5py) on first use, since both are optional.

The package, the command line and the pipeline import the entry points from here, never
:mod:`.write`, :mod:`.read` or :mod:`.summary` directly, so ``albsnn-compress`` works without
the ``nir`` package and says what to install when a NIR file is asked for.

Each entry point is the real function for type checkers (mypy checks callers against its
signature; editors show its docstring) and, at run time, a forwarder that imports the real
module on its first call. The signature and documentation live once, on the real function:
:func:`albsnn_compress.formats.nir.read.read_nir`, :func:`albsnn_compress.formats.nir.write.export_nir`,
:func:`albsnn_compress.formats.nir.write.check_exportable` and
:func:`albsnn_compress.formats.nir.summary.nir_summary`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from albsnn_compress.errors import NirError

__all__ = [
    "HDF5_MAGIC",
    "is_nir_file",
    "export_nir",
    "check_nir_exportable",
    "read_nir",
    "nir_summary",
    "INSTALL_HINT",
]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
INSTALL_HINT = "pip install nir (it brings h5py)"
_PACKAGE = "albsnn_compress.formats.nir"


def is_nir_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the HDF5 signature (NIR files are HDF5)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


def _module(name: str) -> ModuleType:
    """``albsnn_compress.formats.nir.<name>``; a missing third-party package is a NirError that says what to install."""
    try:
        return importlib.import_module(f"{_PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("albsnn_compress"):
            raise
        raise NirError(f"NIR files need the {exc.name!r} package: {INSTALL_HINT}") from exc


def _on_first_call(module: str, function: str) -> Callable[..., Any]:
    """A stand-in for ``module.function`` that imports the module when it is called and forwards the call."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        return getattr(_module(module), function)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = function
    forward.__doc__ = (
        f":func:`{_PACKAGE}.{module}.{function}`, imported on first call (it needs the optional ``nir`` package); "
        "see there for the arguments."
    )
    return forward


if TYPE_CHECKING:
    from albsnn_compress.formats.nir.read import read_nir as read_nir
    from albsnn_compress.formats.nir.summary import nir_summary as nir_summary
    from albsnn_compress.formats.nir.write import check_exportable as check_nir_exportable
    from albsnn_compress.formats.nir.write import export_nir as export_nir
else:
    read_nir = _on_first_call("read", "read_nir")
    nir_summary = _on_first_call("summary", "nir_summary")
    export_nir = _on_first_call("write", "export_nir")
    check_nir_exportable = _on_first_call("write", "check_exportable")
