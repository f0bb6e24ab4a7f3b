"""A NIR graph as one chain ``Input -> ... -> Output`` of node types we read, or a refusal naming the node.

Refused, in one line naming the file and the node: a node type with no layer here (``Delay``,
``Threshold``, ``LI``...), a subgraph (``NIRGraph``, e.g. a recurrent layer), an edge to a node
the graph lacks, a branch or a merge (residual and recurrent connections), a cycle (an edge into
the ``Input``, out of the ``Output``, or a loop off the chain), a node off the chain, and a graph
without exactly one ``Input`` and one ``Output``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nir

from albsnn_compress.errors import NirError, one_line

__all__ = ["Chain", "SUPPORTED_NODES", "chain_of"]

SUPPORTED_NODES = (
    "Input",
    "Output",
    "Conv2d",
    "Affine",
    "Linear",
    "AvgPool2d",
    "SumPool2d",
    "Flatten",
    "LIF",
    "IF",
    "CubaLIF",
)
"""The NIR node types a chain may hold (see :mod:`.translate` for what each becomes)."""

Chain = list[tuple[str, Any]]
"""``(name, node)`` from the Input node to the Output node."""


def _check_types(nodes: dict[str, Any], path: Path) -> None:
    supported = list(SUPPORTED_NODES)
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NirError(
                f"{path}: node {name!r} is a subgraph (NIRGraph, e.g. a recurrent layer); "
                f"only chains of {supported} are supported"
            )
        if type(node).__name__ not in SUPPORTED_NODES:
            raise NirError(
                f"{path}: node {name!r} is a {type(node).__name__}, which has no layer here; supported: {supported}"
            )


def _ends(nodes: dict[str, Any], path: Path) -> tuple[str, str]:
    inputs = [name for name, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [name for name, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(
            f"{path}: a chain has one Input and one Output node, found inputs {inputs} and outputs {outputs}"
        )
    return inputs[0], outputs[0]


def _next_nodes(nodes: dict[str, Any], edges: Iterable[Any], path: Path) -> dict[str, str]:
    """Each node's one successor; a node with two inputs or two outputs is refused."""
    following: dict[str, list[str]] = {name: [] for name in nodes}
    preceding: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in edges:
        ends = tuple(edge) if isinstance(edge, (tuple, list)) else ()
        if len(ends) != 2 or not all(isinstance(end, str) and end in nodes for end in ends):
            raise NirError(f"{path}: edges: {one_line(repr(edge), 200)} names a node the graph does not have")
        following[ends[0]].append(ends[1])
        preceding[ends[1]].append(ends[0])
    for name in nodes:
        if len(following[name]) > 1 or len(preceding[name]) > 1:
            raise NirError(
                f"{path}: node {name!r} has {len(preceding[name])} inputs and {len(following[name])} outputs; only "
                "chains (one input, one output per node: no residual or recurrent connections) are supported"
            )
    return {name: after[0] for name, after in following.items() if after}


def _check_acyclic(nodes: dict[str, Any], following: dict[str, str], first: str, last: str, path: Path) -> None:
    """Every node has at most one successor and one predecessor here, so a cycle is a loop back into the Input, out
    of the Output, or a ring of nodes off the chain: each is refused naming the nodes on it."""
    into_first = [name for name, after in following.items() if after == first]
    if into_first or last in following:
        edge = (into_first[0], first) if into_first else (last, following[last])
        raise NirError(
            f"{path}: edges: {edge[0]!r} -> {edge[1]!r} leads back along the chain (a cycle); the Input node takes no "
            "input and the Output node feeds nothing"
        )
    seen: set[str] = set()
    for start in nodes:
        trail: list[str] = []
        on_trail: set[str] = set()
        name: str | None = start
        while name is not None and name not in seen:
            seen.add(name)
            trail.append(name)
            on_trail.add(name)
            name = following.get(name)
        if name is not None and name in on_trail:
            ring = trail[trail.index(name) :] + [name]
            shown = " -> ".join(repr(node) for node in ring[:8]) + (" -> ..." if len(ring) > 8 else "")
            raise NirError(f"{path}: edges: {shown} form a cycle; only chains are supported")


def chain_of(graph: nir.NIRGraph, path: Path) -> Chain:
    """The nodes from Input to Output (``path`` names the file in messages).

    Raises:
        NirError: naming the node that makes the graph something other than a chain of :data:`SUPPORTED_NODES`.
    """
    nodes = graph.nodes if isinstance(graph.nodes, dict) else {}
    _check_types(nodes, path)
    first, last = _ends(nodes, path)
    following = _next_nodes(nodes, graph.edges if isinstance(graph.edges, (list, tuple)) else (), path)
    _check_acyclic(nodes, following, first, last, path)
    chain: Chain = []
    name = first
    while True:
        chain.append((name, nodes[name]))
        if name == last:
            break
        if name not in following or len(chain) > len(nodes):
            raise NirError(f"{path}: node {name!r} leads nowhere; the chain from {first!r} never reaches {last!r}")
        name = following[name]
    missing = sorted(set(nodes) - {name for name, _ in chain})
    if missing:
        raise NirError(f"{path}: nodes {missing} are not on the chain from {first!r} to {last!r}")
    return chain
