"""What ``albsnn-compress inspect`` shows of a NIR file: whether it can be imported, NIR's own type check, the
metadata, every node.

Any NIR graph is summarized, not only the chains :func:`~.read.read_nir` reads: a node's
parameters are shown in a few characters each (an array as its shape and range, a text cut to
:data:`SHOWN_CHARS` characters), in the order the edges lead from the inputs. The file is read
as an import reads it (:mod:`.graph_file`: every object bounded before it is read; a metadata
value too big to use is not read and shows as what it is), and the summary says whether
``import`` would take it (``"import"``: ``"cannot be imported: <reason>"`` when not).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np

from albsnn_compress.errors import NirError, one_line
from albsnn_compress.formats.nir.graph_file import graph_metadata, read_nir_file, written_by_us
from albsnn_compress.formats.nir.mapping import DT
from albsnn_compress.formats.nir.params import Unread, metadata_scalar
from albsnn_compress.formats.nir.read import plan_read

__all__ = ["SHOWN_CHARS", "TYPE_CHECK_EDGES", "nir_summary"]

SHOWN_CHARS = 1000
"""Characters of a text value shown (a metadata string, a name): longer ones are cut, ending in ``...``."""
TYPE_CHECK_EDGES = 4096
"""Edges up to which NIR's own type check runs: it rescans every edge for each one (quadratic time)."""

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
    """What ``inspect`` shows of a NIR file: import verdict, graph metadata, every node's type, shapes and parameters.

    ``import`` is ``"yes..."`` or ``"cannot be imported: <reason>"`` (the one line ``import`` and ``compress``
    would refuse the file with; a file we did not write is checked at T = 1, as it records no time steps).
    Shapes come from NIR's own type inference where it succeeds (``type_check`` says whether).
    Time constants are also given in steps (``tau/dt``, dt from the file's metadata, else 1e-4 s).

    Raises:
        NirError: the file is not a NIR file, is damaged, or breaks a bound of the reader.
    """
    path = Path(path)
    read = read_nir_file(path)
    graph = read.graph
    verdict = _import_verdict(path, graph)  # before NIR's type inference, which adds nodes to the graph
    type_check = _type_check(graph)
    dt = _dt(graph)
    return {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "nir_version": _clip(read.version),
        "import": verdict,
        "type_check": type_check,
        "metadata": _shown_metadata(graph),
        "nodes": [_node(name, node, dt) for name, node in _in_flow_order(graph)],
        "edges": [[str(a), str(b)] for a, b in graph.edges],  # (source, target) pairs
    }


def _import_verdict(path: Path, graph: nir.NIRGraph) -> str:
    """Whether ``import`` takes the graph: ``read_nir``'s checks, up to (not including) building the model."""
    ours = written_by_us(graph)
    try:
        plan = plan_read(path, graph, timesteps=None if ours else 1)
    except NirError as exc:
        return f"cannot be imported: {one_line(str(exc).removeprefix(f'{path}: '), SHOWN_CHARS)}"
    if ours:
        return f"yes, at T={plan.options.timesteps} as recorded"
    return "yes, with the time steps given (the file records none)"


def _type_check(graph: nir.NIRGraph) -> str:
    """NIR's own verdict on the graph (it infers the shapes the nodes show)."""
    if len(graph.edges) > TYPE_CHECK_EDGES:
        count = len(graph.edges)
        return f"not run: {count} edges (NIR's check takes time quadratic in them; at most {TYPE_CHECK_EDGES})"
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
    """A time constant in steps of ``dt``: the values (or, for an array, its range) divided by ``dt``, no copy made of
    a large array."""
    array = np.asarray(value) if not isinstance(value, Unread) else np.zeros(0, dtype=object)
    if array.dtype.kind not in "iuf":
        return "(not a number)"
    if array.size <= 4:
        return _short(array.astype(np.float64) / dt)
    with np.errstate(over="ignore"):  # a huge time constant over a tiny dt shows as inf
        low, high = float(array.min()) / dt, float(array.max()) / dt
    if low == high:
        return f"{low:g} x {list(array.shape)}"
    return f"{list(array.shape)} in [{low:g}, {high:g}]"


def _shown_metadata(graph: nir.NIRGraph) -> dict[str, str]:
    return {str(key): _short(value) for key, value in graph_metadata(graph).items()}


def _clip(text: str) -> str:
    """A text on one line, cut to :data:`SHOWN_CHARS` characters."""
    return one_line(text, SHOWN_CHARS) if len(text) > SHOWN_CHARS or not text.isprintable() else text


def _short(value: Any) -> str:
    """A parameter in a few characters: small arrays in full, a constant array as ``value x shape``, else its range."""
    try:
        return _describe(value)
    except _NUMPY_ERRORS:
        return f"({type(value).__name__})"


def _describe(value: Any) -> str:
    if isinstance(value, Unread):
        return str(value)
    if isinstance(value, (str, bytes)):
        return _clip(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return _clip("{" + ", ".join(f"{key}: {_describe(item)}" for key, item in value.items()) + "}")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return _clip(", ".join(value))
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        return f"({array.dtype} {list(array.shape)})"
    if array.size == 0:
        return "[]"
    if array.size <= 4:
        return _clip(str(array.tolist()))
    flat = array.reshape(-1)
    low, high = flat.min(), flat.max()  # one pass each; NaN shows as nan
    if low == high:
        return f"{float(low):g} x {list(array.shape)}"
    return f"{list(array.shape)} in [{float(low):g}, {float(high):g}]"


def _in_flow_order(graph: nir.NIRGraph) -> list[tuple[Any, Any]]:
    """The nodes from the inputs along the edges (breadth first), then any the edges never reach."""
    nodes = graph.nodes if isinstance(graph.nodes, Mapping) else {}
    following: dict[Any, list[Any]] = {}
    for edge in graph.edges:
        if isinstance(edge, (tuple, list)) and len(edge) == 2:
            following.setdefault(edge[0], []).append(edge[1])
    order, seen = [], set()
    queue = deque(name for name, node in nodes.items() if isinstance(node, nir.Input))
    while queue:
        name = queue.popleft()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        order.append((name, nodes[name]))
        queue += following.get(name, [])
    return order + [(name, node) for name, node in nodes.items() if name not in seen]
