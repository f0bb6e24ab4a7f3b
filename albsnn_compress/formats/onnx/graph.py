"""Building blocks of the ONNX graph: a small graph builder, 1-bit and k-bit unpacking.

Everything here emits standard ``ai.onnx`` operators only (no custom or contrib
ops), so any runtime that implements opset 18 runs the result. See
``docs/onnx.md`` for the layout these pieces produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GraphBuilder", "unpack_signs", "unpack_codes"]

# Right shifts that bring bit 7 - k of a byte (MSB first, albsnn_compress/formats/bitpack.py) to bit 0.
_SHIFTS = np.arange(7, -1, -1, dtype=np.uint8)


class GraphBuilder:
    """Collects nodes and initializers, hands out unique names and shares equal constants.

    Tensor names derive from the layer being built (``conv2.w``, ``lif1.s3``), so
    the graph reads like the spec; small shared constants are ``c0``, ``c1``, ...
    Nodes stay unnamed (their outputs identify them), which keeps an unrolled
    graph small. The output depends only on the model: building the same model
    twice gives byte-identical protobufs.
    """

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken: set[str] = set()
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def fresh(self, hint: str) -> str:
        """A tensor name based on ``hint`` that is not used yet."""
        name, suffix = hint, 1
        while name in self._taken:
            suffix += 1
            name = f"{hint}_{suffix}"
        self._taken.add(name)
        return name

    def initializer(self, hint: str, array: np.ndarray) -> str:
        """Store ``array`` (kept bit for bit) as an initializer; returns its name."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, values: Any, dtype: type = np.float32) -> str:
        """A small constant, stored once however many nodes use it."""
        array: np.ndarray = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:  # short names: an unrolled graph mentions them hundreds of times
            self._constants[key] = self.initializer(f"c{len(self._constants)}", array)
        return self._constants[key]

    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        """Append one node with a single output named after ``hint``; returns that name."""
        return self.node_multi(op, inputs, hint, 1, **attrs)[0]

    def node_multi(self, op: str, inputs: Sequence[str], hint: str, outputs: int, **attrs: Any) -> list[str]:
        """Append one node with ``outputs`` outputs; returns their names."""
        names = [self.fresh(hint if outputs == 1 else f"{hint}.{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, **attrs))  # unnamed: outputs name it
        return names

    def graph(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.GraphProto:
        """The finished graph."""
        return helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)


def unpack_signs(builder: GraphBuilder, bits: str, count: int, shape: Sequence[int], hint: str) -> str:
    """Nodes that turn packed sign bits (a uint8 initializer) into a float ``+1/-1`` tensor.

    ``bytes [n] -> Reshape [n, 1] -> BitShift right by [7..0] -> BitwiseAnd 1
    [-> Reshape [8n] -> Slice [:count] if there are padding bits] -> Cast float
    -> * 2 - 1 -> Reshape shape``.

    Args:
        builder: the graph being built.
        bits: name of the uint8 initializer in the layout of ``albsnn_compress/formats/bitpack.py``.
        count: number of weights (the bits after it are padding).
        shape: the weight's shape.
        hint: name prefix for the new tensors.
    """
    column = builder.node("Reshape", [bits, builder.const([-1, 1], np.int64)], f"{hint}.bytes")
    shifted = builder.node("BitShift", [column, builder.const(_SHIFTS, np.uint8)], f"{hint}.shift", direction="RIGHT")
    masked = builder.node("BitwiseAnd", [shifted, builder.const(1, np.uint8)], f"{hint}.bit")
    if count % 8:  # drop the padding bits of the last byte
        flat = builder.node("Reshape", [masked, builder.const([-1], np.int64)], f"{hint}.flat")
        masked = builder.node(
            "Slice", [flat, builder.const([0], np.int64), builder.const([count], np.int64)], f"{hint}.trim"
        )
    as_float = builder.node("Cast", [masked], f"{hint}.float", to=TensorProto.FLOAT)
    doubled = builder.node("Mul", [as_float, builder.const(2.0)], f"{hint}.x2")
    signs = builder.node("Sub", [doubled, builder.const(1.0)], f"{hint}.pm1")
    return builder.node("Reshape", [signs, builder.const(list(shape), np.int64)], f"{hint}.sign")


def unpack_codes(builder: GraphBuilder, codes: str, count: int, bits: int, shape: Sequence[int], hint: str) -> str:
    """Nodes that turn k-bit codes into a float tensor of their integer values.

    8 bits: an ``int8`` initializer, ``Cast float -> Reshape shape``. 2 and 4 bits: a ``uint8``
    initializer in the k-bit layout of ``albsnn_compress/formats/bitpack.py``: ``bytes [n] ->
    Reshape [n, 1] -> BitShift right by [0, k, 2k, ...] -> BitwiseAnd (2^k - 1) -> Reshape [-1]
    [-> Slice [:count] if there are padding fields] -> Cast int64 -> Gather`` from the table of the
    ``2^k`` two's-complement values ``-> Reshape shape``.

    Args:
        builder: the graph being built.
        codes: name of the initializer.
        count: number of weights (the fields after it are padding).
        bits: 2, 4 or 8.
        shape: the weight's shape.
        hint: name prefix for the new tensors.
    """
    if bits == 8:
        as_float = builder.node("Cast", [codes], f"{hint}.float", to=TensorProto.FLOAT)
        return builder.node("Reshape", [as_float, builder.const(list(shape), np.int64)], f"{hint}.codes")
    column = builder.node("Reshape", [codes, builder.const([-1, 1], np.int64)], f"{hint}.bytes")
    shifts = builder.const(np.arange(0, 8, bits, dtype=np.uint8), np.uint8)
    shifted = builder.node("BitShift", [column, shifts], f"{hint}.shift", direction="RIGHT")
    fields = builder.node("BitwiseAnd", [shifted, builder.const((1 << bits) - 1, np.uint8)], f"{hint}.field")
    flat = builder.node("Reshape", [fields, builder.const([-1], np.int64)], f"{hint}.flat")
    if count % (8 // bits):  # drop the padding fields of the last byte
        flat = builder.node(
            "Slice", [flat, builder.const([0], np.int64), builder.const([count], np.int64)], f"{hint}.trim"
        )
    index = builder.node("Cast", [flat], f"{hint}.index", to=TensorProto.INT64)
    half = 1 << (bits - 1)
    table = builder.const([value if value < half else value - (1 << bits) for value in range(1 << bits)])
    values = builder.node("Gather", [table, index], f"{hint}.value", axis=0)
    return builder.node("Reshape", [values, builder.const(list(shape), np.int64)], f"{hint}.codes")
