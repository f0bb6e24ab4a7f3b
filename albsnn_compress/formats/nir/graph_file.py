"""A NIR file read with bounds: every object checked from its HDF5 shape and type before a byte of it is read.

``nir.read`` decodes every dataset of a file in full, whatever its size or type, and builds
nodes from whatever it finds. This module reads the same graph in two passes:

1. **Scan**, nothing read: every link a hard link (no external or soft links), every dataset
   stored in the file (no external or virtual ones) and of a number, bool or string type (no
   enum, compound, complex, reference or variable-length sequence), at most
   :data:`MAX_NIR_OBJECTS` groups and datasets nested at most :data:`MAX_NIR_DEPTH` deep, at most
   ``MAX_ELEMENTS`` elements per dataset and :data:`MAX_NIR_BYTES` declared in all (gzip lets a
   small file claim gigabytes). Every group and dataset name goes through ``check_name``.
2. **Read** of the graph group, field by field: a node's ``type`` must be a NIR node type and
   its datasets fields of that type (anything else is refused before it is read); the size and
   index fields (``stride``, ``padding``, ``shape``...) hold at most :data:`MAX_SHAPE_ELEMENTS`
   integers with the signs NIR's own arithmetic needs, a per-neuron field (``tau``, ``v_threshold``,
   ``bias``...) at most one layer's output (``MAX_ACTIVATION``) values, a weight at most
   ``MAX_ELEMENTS``; arrays come back in native byte order;
   strings as strict UTF-8, names through ``check_name``, text through ``check_text``; at most
   :data:`MAX_NIR_NODES` nodes and :data:`MAX_NIR_EDGES` edges. Metadata is free-form, so a
   metadata value too big to be one our reader uses (more than :data:`MAX_METADATA_ELEMENTS`
   numbers, text over ``MAX_TEXT_CHARS`` characters or not UTF-8) is left in the file as an
   :class:`Unread` marker: ``inspect`` shows what it is, ``read_nir`` refuses it where it needs the
   value and ignores it elsewhere.

Then NIR's own classes are built from the values, one node at a time (a failure names the node).
Nothing is unpickled. A variable-length string's length is not part of its HDF5 type: it is
stored uncompressed in the file, so reading one costs at most the file's size, and its length is
checked right after.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from albsnn_compress.errors import NirError, one_line
from albsnn_compress.files.model_cost import MAX_ACTIVATION
from albsnn_compress.formats.nir.optional import HDF5_MAGIC, is_nir_file
from albsnn_compress.formats.nir.params import Unread
from albsnn_compress.formats.nir.write import NIR_FORMAT
from albsnn_compress.limits import (
    MAX_ELEMENTS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    check_name,
    check_text,
    element_count,
    regular_file_size,
)

__all__ = [
    "MAX_METADATA_ELEMENTS",
    "MAX_NIR_BYTES",
    "MAX_NIR_DEPTH",
    "MAX_NIR_EDGES",
    "MAX_NIR_NODES",
    "MAX_NIR_OBJECTS",
    "MAX_SHAPE_ELEMENTS",
    "NirFile",
    "checked_name",
    "graph_metadata",
    "read_nir_file",
    "read_nir_graph",
    "written_by_us",
]

MAX_NIR_BYTES = 1 << 30
"""Decoded bytes all datasets of a NIR file may declare (gzip can expand a small file a lot)."""
MAX_NIR_OBJECTS = 100_000
"""HDF5 groups and datasets a NIR file may hold."""
MAX_NIR_DEPTH = 16
"""Nesting of HDF5 groups (a node's metadata sits 4 deep, a subgraph's nodes 2 deeper per level)."""
MAX_NIR_NODES = 10_000
"""Nodes of one graph: a spec has at most 4096 layers, our writer makes at most two nodes of one, plus three."""
MAX_NIR_EDGES = 4 * MAX_NIR_NODES
"""Edges of one graph (a chain has one fewer than its nodes; other graphs branch)."""
MAX_SHAPE_ELEMENTS = 8
"""Integers of a size or index field (``shape``, ``stride``, ``padding``...): one per axis, and no tensor has more."""
MAX_METADATA_ELEMENTS = MAX_ACTIVATION
"""Numbers of a metadata array that is read: ours hold one value per channel, at most a layer's output size."""
_MAX_METADATA_STRINGS = 256
"""Strings of a metadata string array that is read (ours hold single strings)."""

_SHAPE_FIELDS = frozenset(
    {
        "shape",
        "input_shape",
        "input_type",
        "output_type",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "start_dim",
        "end_dim",
    }
)
_PER_NEURON_FIELDS = frozenset(
    {
        "tau",
        "r",
        "v_leak",
        "v_threshold",
        "v_reset",
        "tau_syn",
        "tau_mem",
        "w_in",
        "delay",
        "threshold",
        "scale",
        "bias",
    }
)
"""Fields with one value per neuron (or output channel) of one layer: at most a layer's output, ``MAX_ACTIVATION``."""
_POSITIVE_FIELDS = frozenset({"kernel_size", "stride", "dilation", "groups"})
"""Size fields NIR divides or multiplies by: 0 or a negative value has no meaning (``stride`` 0 divides by 0)."""
_SIGNED_FIELDS = frozenset({"start_dim", "end_dim"})
"""Index fields that count from the end when negative."""
_PADDING_WORDS = ("same", "valid")

_NODE_TYPES: dict[str, type] = {
    name: cls
    for name, cls in vars(nir).items()
    if isinstance(cls, type) and issubclass(cls, nir.NIRNode) and cls is not nir.NIRNode
}
"""The node types NIR defines, by the name a file's ``type`` dataset gives."""

_H5PY_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)
"""What h5py raises for a damaged file: it maps the HDF5 error stack to these builtins."""


@dataclass(frozen=True)
class NirFile:
    """A NIR file as read: its graph (NIR's classes, built without type inference) and the NIR version it records."""

    path: Path
    graph: nir.NIRGraph
    version: str


def checked_name(value: object, where: str) -> str:
    """``check_name`` (non-empty, at most 256 characters, no control characters), and encodable as UTF-8 (no lone
    surrogate, which h5py makes of a link name that is not UTF-8)."""
    name = check_name(value, where, NirError)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NirError(f"{where}: the name is not valid UTF-8 ({one_line(exc, 80)}); the file is damaged") from exc
    return name


def _kind(dtype: np.dtype[Any]) -> str | None:
    """``"text"``, ``"number"`` (bool included), or ``None`` for a type no NIR file holds."""
    if h5py.check_string_dtype(dtype) is not None:
        return "text"
    if dtype.kind == "b" or (dtype.kind in "iuf" and h5py.check_enum_dtype(dtype) is None and dtype.fields is None):
        return "number"
    return None


def _type_name(dtype: np.dtype[Any]) -> str:
    if h5py.check_enum_dtype(dtype) is not None:
        return f"an enum of {dtype}"
    if h5py.check_vlen_dtype(dtype) is not None:
        return f"a variable-length sequence of {h5py.check_vlen_dtype(dtype)}"
    return str(dtype)


@dataclass(frozen=True)
class _Data:
    """A dataset as the scan found it: its type and shape (read once: h5py looks them up on every access)."""

    item: h5py.Dataset
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    kind: str  # "text" or "number"


_Tree = dict[str, "_Tree | _Data"]
"""A group as the scan found it: its members by name."""


class _Scan:
    """Pass 1: the whole HDF5 tree, counting objects and declared bytes; nothing is read. Returns the tree found."""

    def __init__(self, path: Path) -> None:
        self.path, self.objects, self.bytes = path, 0, 0

    def group(self, group: h5py.Group, where: str, depth: int) -> _Tree:
        if depth > MAX_NIR_DEPTH:
            raise NirError(f"{self.path}: {where} nests deeper than {MAX_NIR_DEPTH} groups")
        return {key: self.member(group, key, f"{where}/{key}", depth) for key in group}

    def member(self, group: h5py.Group, key: str, where: str, depth: int) -> _Tree | _Data:
        checked_name(key, f"{self.path}: {one_line(where, 120)}")
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise NirError(f"{self.path}: {where} is a {type(link).__name__}; a NIR file holds its own objects only")
        self.objects += 1
        if self.objects > MAX_NIR_OBJECTS:
            raise NirError(f"{self.path}: more than {MAX_NIR_OBJECTS} HDF5 objects")
        item = group[key]
        if isinstance(item, h5py.Group):
            return self.group(item, where, depth + 1)
        if isinstance(item, h5py.Dataset):
            return self.dataset(item, where)
        raise NirError(f"{self.path}: {where} is a {type(item).__name__}, not a group or a dataset")

    def dataset(self, item: h5py.Dataset, where: str) -> _Data:
        if item.is_virtual or item.external:
            raise NirError(f"{self.path}: {where} stores its data outside the file")
        dtype, shape = item.dtype, item.shape
        kind = _kind(dtype)
        if kind is None:
            raise NirError(f"{self.path}: {where} has HDF5 type {_type_name(dtype)}, not a number or string")
        if shape is None:
            raise NirError(f"{self.path}: {where} has no dataspace (an empty HDF5 dataset); the file is damaged")
        count = element_count(shape, f"{self.path}: {where}", NirError, MAX_ELEMENTS)
        self.bytes += count * max(dtype.itemsize, 1)
        if self.bytes > MAX_NIR_BYTES:
            raise NirError(f"{self.path}: its arrays decode to more than {MAX_NIR_BYTES >> 20} MiB")
        return _Data(item, dtype, tuple(shape), kind)


class _Reader:
    """Pass 2: the graph group as the dictionaries NIR's classes are built from, each value bounded before reading."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def where(self, where: str) -> str:
        return f"{self.path}: {where}"

    # -- nodes ---------------------------------------------------------------------------------------------------

    def node(self, group: _Tree, where: str) -> dict[str, Any]:
        """One node's fields; a subgraph's ``nodes`` and ``edges`` read the same way."""
        kind = group.get("type")
        if not isinstance(kind, _Data):
            raise NirError(self.where(f"{where} has no 'type' dataset; it is no NIR node"))
        type_name = self.name(kind, f"{where} field 'type'")
        cls = _NODE_TYPES.get(type_name)
        if cls is None:
            shown, known = one_line(repr(type_name), 80), sorted(_NODE_TYPES)
            raise NirError(self.where(f"{where}: type {shown} is no NIR node type; NIR has {known}"))
        allowed = {field.name for field in dataclasses.fields(cls) if field.init}
        allowed |= {"shape"} if cls in (nir.Input, nir.Output) else set()
        values: dict[str, Any] = {"type": type_name}
        for key, item in group.items():
            label = f"{where} field {key!r}"
            if key == "type":
                continue
            if key not in allowed:
                raise NirError(
                    self.where(f"{label} is not a field of {type_name}, which has {sorted(allowed - {'metadata'})}")
                )
            if key == "metadata":
                values[key] = self.metadata(self.group_of(item, label), label)
            elif cls is nir.NIRGraph and key == "nodes":
                values[key] = self.nodes(self.group_of(item, label), where)
            elif cls is nir.NIRGraph and key == "edges":
                values[key] = self.edges(self.dataset_of(item, label), label)
            else:
                values[key] = self.field(self.dataset_of(item, label), key, label)
        return values

    def nodes(self, group: _Tree, where: str) -> dict[str, dict[str, Any]]:
        if len(group) > MAX_NIR_NODES:
            raise NirError(self.where(f"{where} has {len(group)} nodes, more than {MAX_NIR_NODES}"))
        return {key: self.node(self.group_of(item, f"node {key!r}"), f"node {key!r}") for key, item in group.items()}

    def edges(self, data: _Data, where: str) -> list[tuple[str, str]]:
        """``(source, target)`` names; an empty dataset of any type is no edges (nir.write's empty list)."""
        if element_count(data.shape, self.where(where), NirError) == 0:
            return []
        if data.kind != "text" or len(data.shape) != 2 or data.shape[1] != 2:
            raise NirError(
                self.where(f"{where} must be [n, 2] node names, got {_type_name(data.dtype)} {list(data.shape)}")
            )
        if data.shape[0] > MAX_NIR_EDGES:
            raise NirError(self.where(f"{where} has {data.shape[0]} edges, more than {MAX_NIR_EDGES}"))
        self.check_fixed_width(data, 2 * MAX_NIR_EDGES, where)
        raw_names = self.read(data, where).reshape(-1)
        names = [checked_name(self.decode(raw, where, MAX_NAME_CHARS), self.where(where)) for raw in raw_names]
        return list(zip(names[0::2], names[1::2]))

    def field(self, data: _Data, key: str, where: str) -> Any:
        """A node field: a number array, or (``padding``) a word; size fields checked as NIR computes with them."""
        if data.kind == "text":
            if key != "padding" or data.shape != ():
                raise NirError(self.where(f"{where} must be numbers, got text"))
            self.check_fixed_width(data, 1, where)
            word = self.decode(self.read(data, where), where)
            if word not in _PADDING_WORDS:
                shown = one_line(repr(word), 40)
                raise NirError(self.where(f"{where} {shown} must be a size or one of {_PADDING_WORDS}"))
            return word
        limit = (
            MAX_SHAPE_ELEMENTS
            if key in _SHAPE_FIELDS
            else MAX_ACTIVATION
            if key in _PER_NEURON_FIELDS
            else MAX_ELEMENTS
        )
        element_count(data.shape, self.where(where), NirError, limit)
        value = self.read(data, where)
        if key in _SHAPE_FIELDS:
            self.check_sizes(np.asarray(value), key, where)
        return value

    def check_sizes(self, array: np.ndarray, key: str, where: str) -> None:
        """A size or index field: integers (whole floats count), positive where NIR divides by them, else >= 0."""
        if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
            array = array.astype(np.float64)
        elif array.dtype.kind not in "iu":
            raise NirError(self.where(f"{where} {one_line(array.tolist(), 80)} must be integers, got {array.dtype}"))
        if key in _SIGNED_FIELDS:
            return
        low = 1 if key in _POSITIVE_FIELDS else 0
        if array.size and array.min() < low:
            sign = "positive" if low else "non-negative"
            raise NirError(self.where(f"{where} {one_line(array.tolist(), 80)} must be {sign} integers"))

    # -- metadata ------------------------------------------------------------------------------------------------

    def metadata(self, group: _Tree, where: str) -> dict[str, Any]:
        """Free-form values: groups as dictionaries, values too big to use as :class:`Unread` markers."""
        values: dict[str, Any] = {}
        for key, item in group.items():
            label = f"{where} {key!r}"
            values[key] = self.metadata(item, label) if isinstance(item, dict) else self.metadata_value(item, label)
        return values

    def metadata_value(self, data: _Data, where: str) -> Any:
        shape = list(data.shape)
        count = element_count(data.shape, self.where(where), NirError)
        if data.kind == "number":
            if count > MAX_METADATA_ELEMENTS:
                return Unread(f"{data.dtype} {shape}", f"more than {MAX_METADATA_ELEMENTS} values")
            return self.read(data, where)
        width = h5py.check_string_dtype(data.dtype).length
        if count > _MAX_METADATA_STRINGS or (width is not None and width > 4 * MAX_TEXT_CHARS):
            return Unread(f"text {shape}", f"more than {_MAX_METADATA_STRINGS} strings or {MAX_TEXT_CHARS} characters")
        raw = self.read(data, where)
        try:
            texts = [self.text(one, where) for one in np.asarray(raw, dtype=object).reshape(-1)]
        except NirError as exc:
            what = "text" if data.shape == () else f"text {shape}"
            return Unread(what, one_line(str(exc).removeprefix(self.where(where) + ": "), 120))
        return texts[0] if data.shape == () else texts

    # -- values ---------------------------------------------------------------------------------------------------

    def group_of(self, item: _Tree | _Data, where: str) -> _Tree:
        if not isinstance(item, dict):
            raise NirError(self.where(f"{where} must be an HDF5 group, found a dataset"))
        return item

    def dataset_of(self, item: _Tree | _Data, where: str) -> _Data:
        if not isinstance(item, _Data):
            raise NirError(self.where(f"{where} must be an HDF5 dataset, found a group"))
        return item

    def check_fixed_width(self, data: _Data, count: int, where: str) -> None:
        """Strings that are names (at most ``count`` of them): a fixed-width type declares its size, refused before
        reading when it is wider than a name can be (4 UTF-8 bytes per character)."""
        width = h5py.check_string_dtype(data.dtype).length
        if width is not None and width > 4 * MAX_NAME_CHARS:
            raise NirError(self.where(f"{where}: strings of {width} bytes, more than a name may hold"))
        if element_count(data.shape, self.where(where), NirError) > count:
            raise NirError(self.where(f"{where}: {list(data.shape)} strings, at most {count} expected"))

    def read(self, data: _Data, where: str) -> Any:
        """The dataset's value (numbers in native byte order); a read that needs more memory than there is, refused."""
        try:
            if data.kind == "number" and data.dtype.byteorder not in "=|":
                return data.item.astype(data.dtype.newbyteorder("="))[()]
            return data.item[()]
        except MemoryError as exc:  # a variable-length string's length is only known once read
            raise NirError(self.where(f"{where}: reading it needs more memory than there is")) from exc

    def decode(self, raw: Any, where: str, limit: int = MAX_TEXT_CHARS) -> str:
        """Bytes as strict UTF-8; more bytes than ``limit`` characters can take (4 each) refused undecoded."""
        if isinstance(raw, str):
            return raw
        if not isinstance(raw, bytes):
            raise NirError(self.where(f"{where} must be text, got {type(raw).__name__}"))
        if len(raw) > 4 * limit:
            raise NirError(self.where(f"{where}: {len(raw)} bytes, more than text of {limit} characters takes"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NirError(self.where(f"{where}: not UTF-8 (byte {exc.start}: {exc.reason})")) from exc

    def text(self, raw: Any, where: str) -> str:
        return check_text(self.decode(raw, where), self.where(where), NirError)

    def name(self, data: _Data, where: str) -> str:
        if data.kind != "text" or data.shape != ():
            raise NirError(self.where(f"{where} must be one string, got {_type_name(data.dtype)} {list(data.shape)}"))
        self.check_fixed_width(data, 1, where)
        return checked_name(self.decode(self.read(data, where), where, MAX_NAME_CHARS), self.where(where))


def _build(path: Path, values: dict[str, Any], where: str) -> Any:
    """NIR's node of ``values`` (a subgraph's nodes built first, each failure naming its node)."""
    if values["type"] != "NIRGraph":
        try:
            return nir.dict2NIRNode(values)
        # NIR's constructors assert shapes and compute with the values: whatever they raise is about this node
        except Exception as exc:  # noqa: BLE001
            raise NirError(
                f"{path}: {where} ({values['type']}): NIR cannot build it ({type(exc).__name__}: {one_line(exc, 200)})"
            ) from exc
    for key in ("nodes", "edges"):
        if key not in values:
            raise NirError(f"{path}: {where} (NIRGraph) has no {key!r}")
    nodes = {name: _build(path, node, f"node {name!r}") for name, node in values["nodes"].items()}
    return nir.NIRGraph(nodes=nodes, edges=values["edges"], metadata=values.get("metadata", {}), type_check=False)


def read_nir_file(path: str | os.PathLike[str]) -> NirFile:
    """The file's graph (NIR's classes, no type inference) and recorded NIR version, read with the bounds above.

    Raises:
        NirError: the file is not a NIR file, is damaged, or breaks a bound; one line naming the object or field.
    """
    path = Path(path)
    regular_file_size(path, "a NIR file (.nir, HDF5)", NirError)  # a FIFO or a device would block the reader
    if not is_nir_file(path):
        raise NirError(f"{path}: not a NIR file (NIR files are HDF5, which starts with {HDF5_MAGIC!r})")
    try:
        with h5py.File(path, "r") as handle:
            if "node" not in handle:
                raise NirError(f"{path}: an HDF5 file without a NIR graph (no 'node' group)")
            tree = _Scan(path).group(handle, "", 0)
            reader = _Reader(path)
            values = reader.node(reader.group_of(tree["node"], "/node"), "graph")
            version = tree.get("version")
            recorded = ""
            if isinstance(version, _Data) and version.kind == "text" and version.shape == ():
                recorded = reader.text(reader.read(version, "/version"), "/version")
    except NirError:  # a ValueError too: a refusal of the reader, not a damaged file
        raise
    except _H5PY_ERRORS as exc:
        raise NirError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: {one_line(exc, 200)})") from exc
    if values["type"] != "NIRGraph":
        raise NirError(f"{path}: the top node is a {values['type']}, not a NIRGraph")
    return NirFile(path, _build(path, values, "graph"), recorded)


def read_nir_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """The file's ``nir.NIRGraph`` (no type inference), read with the bounds above (:func:`read_nir_file`).

    Raises:
        NirError: the file is not a NIR file, is damaged, or breaks a bound.
    """
    return read_nir_file(path).graph


def graph_metadata(graph: nir.NIRGraph) -> Mapping[str, Any]:
    """The graph's metadata, ``{}`` when it has none (or something that is no mapping)."""
    metadata = getattr(graph, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def written_by_us(graph: nir.NIRGraph) -> bool:
    """Whether the graph metadata says our writer made the file (``albsnn_format``): then its metadata is trusted."""
    recorded = graph_metadata(graph).get("albsnn_format")
    return isinstance(recorded, str) and recorded == NIR_FORMAT
