"""What ``albsnn-compress inspect`` shows of a NIR file: NIR's own type check, the metadata, every node.

Any NIR graph is summarized, not only the chains :func:`~.read.read_nir` reads: a node's
parameters are shown in a few characters each, in the order the edges lead
from the inputs. The file goes through the same bounded scan as a read (:mod:`.graph_file`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from albsnn_compress.errors import one_line
from albsnn_compress.formats.nir.graph_file import graph_metadata, read_nir_graph
from albsnn_compress.formats.nir.mapping import DT
from albsnn_compress.formats.nir.params import metadata_scalar

__all__ = ["nir_summary"]

_PARAMETERS = (
    "weight",
    "bias",
    "stride",
    "padding",
    "dilation",
    "groups",
    "kernel_size",
    "start_dim",
    "end_dim",
    "tau",
    "tau_mem",
    "tau_syn",
    "r",
    "w_in",
    "v_leak",
    "v_threshold",
    "v_reset",
    "scale",
)
"""The node fields shown (those a node has)."""
_TIME_CONSTANTS = ("tau", "tau_mem", "tau_syn")

_NUMPY_ERRORS = (ValueError, TypeError, IndexError, OverflowError)
"""What numpy raises for a value it cannot convert or compare (a ragged object, a string, a huge number)."""


def nir_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``inspect`` shows of a NIR file: graph metadata, every node's type, shapes and parameters.

    Shapes come from NIR's own type inference where it succeeds (``type_check`` says whether).
    Time constants are also given in steps (``tau/dt``, dt from the file's metadata, else 1e-4 s).

    Raises:
        NirError: the file is not a NIR file, is damaged, or breaks a bound.
    """
    path = Path(path)
    graph = read_nir_graph(path)
    type_check = _type_check(graph)
    with h5py.File(path, "r") as handle:
        version = handle["version"][()] if isinstance(handle.get("version"), h5py.Dataset) else b""
    dt = _dt(graph)
    return {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "nir_version": version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version),
        "type_check": type_check,
        "metadata": _shown_metadata(graph),
        "nodes": [_node(name, node, dt) for name, node in _in_flow_order(graph)],
        "edges": [[str(a), str(b)] for a, b in graph.edges],  # nir.read gives (source, target) pairs
    }


def _type_check(graph: nir.NIRGraph) -> str:
    """NIR's own verdict on the graph (it infers the shapes the nodes show)."""
    try:
        graph.infer_types()
        graph.check_types()
    except Exception as exc:  # noqa: BLE001 - NIR's verdict, whatever it raised, is what inspect reports
        return f"fails: {one_line(exc, 200)}"
    return "passes"


def _dt(graph: nir.NIRGraph) -> float:
    """Seconds per step: what our writer recorded, else NIR importers' 1e-4."""
    recorded = metadata_scalar(graph_metadata(graph), "albsnn_dt")
    return float(recorded) if isinstance(recorded, (int, float)) and math.isfinite(recorded) and recorded > 0 else DT


def _node(name: Any, node: Any, dt: float) -> dict[str, Any]:
    params = {key: _short(getattr(node, key)) for key in _PARAMETERS if getattr(node, key, None) is not None}
    for key in _TIME_CONSTANTS:  # in time steps of dt, what our LIF's tau means
        if getattr(node, key, None) is not None:
            params[f"{key}/dt"] = _in_steps(getattr(node, key), dt)
    metadata = getattr(node, "metadata", None)
    return {
        "name": str(name),
        "type": type(node).__name__,
        "input": _shape(getattr(node, "input_type", None)),
        "output": _shape(getattr(node, "output_type", None)),
        "params": params,
        "metadata": {str(k): _short(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {},
    }


def _shape(types: Any) -> list[int] | None:
    """The first port's shape, ``None`` where the node declares none or something that is no shape."""
    value = next(iter(types.values()), None) if isinstance(types, Mapping) and types else None
    if value is None:
        return None
    try:
        return [int(size) for size in np.asarray(value).reshape(-1)]
    except _NUMPY_ERRORS:
        return None


def _in_steps(value: Any, dt: float) -> str:
    try:
        steps = np.asarray(value, dtype=np.float64) / dt
    except _NUMPY_ERRORS:
        return "(not a number)"
    return _short(steps)


def _shown_metadata(graph: nir.NIRGraph) -> dict[str, str]:
    return {str(key): _short(value) for key, value in graph_metadata(graph).items()}


def _short(value: Any) -> str:
    """A parameter in a few characters: small arrays in full, a constant array as ``value x shape``, else its range."""
    try:
        return _describe(value)
    except _NUMPY_ERRORS:
        return f"({type(value).__name__})"


def _describe(value: Any) -> str:
    array = np.asarray(value)
    if array.dtype.kind in "SUO":
        return str(value if not isinstance(value, bytes) else value.decode("utf-8", "replace"))
    if array.size == 0:
        return "[]"
    if array.size <= 4:
        return str(array.tolist())
    flat = array.reshape(-1)
    unique = np.unique(flat)
    if unique.size == 1:
        return f"{unique[0]:g} x {list(array.shape)}"
    if array.dtype.kind in "biuf":
        return f"{list(array.shape)} in [{flat.min():g}, {flat.max():g}]"
    return f"{list(array.shape)}"


def _in_flow_order(graph: nir.NIRGraph) -> list[tuple[Any, Any]]:
    """The nodes from the inputs along the edges (breadth first), then any the edges never reach."""
    nodes = graph.nodes if isinstance(graph.nodes, Mapping) else {}
    following: dict[Any, list[Any]] = {}
    for edge in graph.edges:
        if isinstance(edge, (tuple, list)) and len(edge) == 2:
            following.setdefault(edge[0], []).append(edge[1])
    order, seen = [], set()
    queue = [name for name, node in nodes.items() if isinstance(node, nir.Input)]
    while queue:
        name = queue.pop(0)
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        order.append((name, nodes[name]))
        queue += following.get(name, [])
    return order + [(name, node) for name, node in nodes.items() if name not in seen]
