"""A NIR file opened with bounds: a scan of the HDF5 tree, then ``nir.read``; and what our writer's graph metadata says.

The scan runs before ``nir.read`` decodes any array and refuses what a NIR file has no reason
to hold: external or soft links, external or virtual datasets, non-numeric types, more than
:data:`MAX_NIR_OBJECTS` objects, nesting deeper than 16 groups, more than :data:`MAX_NIR_BYTES`
of decoded arrays (gzip can make a small file claim gigabytes). Nothing is unpickled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import nir

from albsnn_compress.errors import NirError, one_line
from albsnn_compress.formats.nir.optional import HDF5_MAGIC, is_nir_file
from albsnn_compress.formats.nir.write import NIR_FORMAT

__all__ = ["MAX_NIR_BYTES", "MAX_NIR_OBJECTS", "graph_metadata", "read_nir_graph", "written_by_us"]

MAX_NIR_BYTES = 1 << 30
"""Decoded bytes of all arrays a NIR file may hold (gzip can expand a small file a lot)."""
MAX_NIR_OBJECTS = 100_000
"""HDF5 groups and datasets a NIR file may hold."""
_MAX_DEPTH = 16

_H5PY_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)
"""What h5py raises for a damaged file: it maps the HDF5 error stack to these builtins."""


class _Scan:
    """One walk over the HDF5 tree, counting objects and decoded bytes."""

    def __init__(self, path: Path) -> None:
        self.path, self.objects, self.bytes = path, 0, 0

    def group(self, group: h5py.Group, where: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise NirError(f"{self.path}: {where} nests deeper than {_MAX_DEPTH} groups")
        for key in group:
            self.member(group, key, f"{where}/{key}", depth)

    def member(self, group: h5py.Group, key: str, where: str, depth: int) -> None:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise NirError(f"{self.path}: {where} is a {type(link).__name__}; a NIR file holds its own objects only")
        self.objects += 1
        if self.objects > MAX_NIR_OBJECTS:
            raise NirError(f"{self.path}: more than {MAX_NIR_OBJECTS} HDF5 objects")
        item = group[key]
        if isinstance(item, h5py.Group):
            self.group(item, where, depth + 1)
        elif isinstance(item, h5py.Dataset):
            self.dataset(item, where)

    def dataset(self, item: h5py.Dataset, where: str) -> None:
        if item.is_virtual or item.external:
            raise NirError(f"{self.path}: {where} stores its data outside the file")
        if item.dtype.kind not in "biufSO":
            raise NirError(f"{self.path}: {where} has HDF5 type {item.dtype}, not a number or string")
        self.bytes += math.prod(item.shape or ()) * max(item.dtype.itemsize, 1)
        if self.bytes > MAX_NIR_BYTES:
            raise NirError(f"{self.path}: its arrays decode to more than {MAX_NIR_BYTES >> 20} MiB")


def _scan(path: Path) -> None:
    """Refuse an HDF5 file that is not plainly a NIR file, before nir.read decodes any array."""
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    if not is_nir_file(path):
        raise NirError(f"{path}: not a NIR file (NIR files are HDF5, which starts with {HDF5_MAGIC!r})")
    try:
        with h5py.File(path, "r") as handle:
            if "node" not in handle:
                raise NirError(f"{path}: an HDF5 file without a NIR graph (no 'node' group)")
            _Scan(path).group(handle, "", 0)
    except NirError:  # a ValueError too: a refusal of the scan, not a damaged file
        raise
    except _H5PY_ERRORS as exc:
        raise NirError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {one_line(exc, 200)})") from exc


def read_nir_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """The file's ``nir.NIRGraph`` as ``nir.read`` gives it (no type inference), after the bounded scan.

    Raises:
        NirError: the file is not a NIR file, is damaged, or breaks a bound.
    """
    path = Path(path)
    _scan(path)
    try:
        graph = nir.read(path, type_check=False)
    # nir.read builds nodes from whatever the file holds and raises AssertionError, KeyError, TypeError... for a
    # malformed graph; every exception of this one foreign call is about the file, and the cause is kept.
    except Exception as exc:  # noqa: BLE001
        raise NirError(f"{path}: nir.read cannot read it ({type(exc).__name__}: {one_line(exc, 200)})") from exc
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"{path}: the top node is a {type(graph).__name__}, not a NIRGraph")
    return graph


def graph_metadata(graph: nir.NIRGraph) -> Mapping[str, Any]:
    """The graph's metadata, ``{}`` when it has none (or something that is no mapping)."""
    metadata = getattr(graph, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def written_by_us(graph: nir.NIRGraph) -> bool:
    """Whether the graph metadata says our writer made the file (``albsnn_format``): then its metadata is trusted."""
    recorded = graph_metadata(graph).get("albsnn_format")
    return isinstance(recorded, str) and recorded == NIR_FORMAT
