"""NIR without importing it: the entry points load ``nir`` (and h5py) on first use, since both are optional.

The command line and the pipeline import this module, never :mod:`.nir_write` or
:mod:`.nir_read` directly, so ``albsnn-compress`` works without the ``nir`` package and
says what to install when a NIR file is asked for.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

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


def is_nir_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the HDF5 signature (NIR files are HDF5)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"albsnn_compress.formats.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("albsnn_compress"):
            raise
        raise NirError(f"NIR files need the {exc.name!r} package: {INSTALL_HINT}") from None


def export_nir(model: Any, path: str | os.PathLike[str], *, dt: float = 1e-4) -> Any:
    """Write ``model`` as a NIR graph (HDF5); see :func:`albsnn_compress.formats.nir.write.export_nir`.

    Returns:
        ``NirExport``: file size, node names, which layers are binary up to a per-channel scale.

    Raises:
        ExportError: naming a layer NIR cannot hold. NirError: ``nir`` is not installed.
    """
    return _module("nir_write").export_nir(model, path, dt=dt)


def check_nir_exportable(model: Any) -> None:
    """Refuse a model NIR cannot hold, before any work; see :func:`albsnn_compress.formats.nir.write.check_exportable`."""
    _module("nir_write").check_exportable(model)


def read_nir(
    path: str | os.PathLike[str],
    timesteps: int | None = None,
    *,
    dt: float | None = None,
    strict_threshold: bool | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    name: str | None = None,
) -> Any:
    """Read a NIR chain as a ``SpikingNet``; see :func:`albsnn_compress.formats.nir.read.read_nir`.

    Raises:
        NirError: naming the node that has no layer here, or when ``nir`` is not installed.
    """
    return _module("nir_read").read_nir(
        path, timesteps, dt=dt, strict_threshold=strict_threshold, mean=mean, std=std, name=name
    )


def nir_summary(*args: Any, **kwargs: Any) -> Any:
    """:func:`albsnn_compress.formats.nir.read.nir_summary`, loaded on first use."""
    return _module("nir_read").nir_summary(*args, **kwargs)
