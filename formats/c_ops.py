"""The operations of the C export: what each kernel call computes, its RAM and its C text.

An exported model is a straight line of kernel calls of ``albsnn_kernels.c``
(:mod:`albsnn_compress.formats.c_plan` builds the line from the layers). Each
operation here knows the tensors it reads and writes (:class:`CTensor`), the
scratch RAM its kernel needs, the const arrays it stores (flash) and the C that
declares its parameters and calls its kernel. The byte counts are those the
kernels index, so the arena the planner sizes from them is exactly what runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from albsnn_compress.formats.c_text import CArray, c_float, c_uint

__all__ = [
    "FLOAT_BYTES",
    "WORD_BYTES",
    "CTensor",
    "LifParams",
    "Operation",
    "NormalizeOp",
    "ConvOp",
    "AffineOp",
    "LifOp",
    "PoolOp",
    "GapOp",
    "StepMeanOp",
]

FLOAT_BYTES = 4
WORD_BYTES = 4  # bit planes are stored in uint32 words, most significant bit first


@dataclass(frozen=True)
class CTensor:
    """A tensor between two kernels (``albsnn_tensor`` in C).

    Attributes:
        channels, height, width: one time step's shape; features are ``channels x 1 x 1``.
        steps: 1 while every time step sees the same values (before the first neuron), else T.
        planes: 0 for float32 values; ``n >= 1`` for ``n`` bit planes of unsigned counts
            (spikes are one plane; an average pool of spikes counts them).
        divisor: the value of a count is ``count / divisor`` (the pooling window's size).
    """

    channels: int
    height: int
    width: int
    steps: int
    planes: int = 0
    divisor: int = 1

    @property
    def numel(self) -> int:
        """Elements of one step."""
        return self.channels * self.height * self.width

    @property
    def is_bits(self) -> bool:
        return self.planes > 0

    @property
    def nbytes(self) -> int:
        """Bytes the kernels read or write: floats, or ``ceil(numel / 32)`` words per plane and step."""
        if not self.is_bits:
            return FLOAT_BYTES * self.steps * self.numel
        return WORD_BYTES * self.steps * self.planes * math.ceil(self.numel / 32)

    def literal(self) -> str:
        """The ``albsnn_tensor`` initializer."""
        fields = (self.channels, self.height, self.width, self.steps, self.planes, self.divisor)
        return "{" + ", ".join(c_uint(v) for v in fields) + "}"

    def describe(self) -> str:
        """``16x28x28 spikes x T4`` and the like, for comments."""
        kind = "float" if not self.is_bits else "spikes" if self.planes == 1 and self.divisor == 1 else f"counts/{self.divisor}"
        return f"{self.channels}x{self.height}x{self.width} {kind}" + (f" x {self.steps} steps" if self.steps > 1 else "")


@dataclass(frozen=True)
class LifParams:
    """One neuron layer's constants (``albsnn_lif``); ``reset`` is the index of its C reset case."""

    tau: float
    v_threshold: float
    v_reset: float
    reset: int
    reset_name: str
    trace_id: int

    def literal(self) -> str:
        values = (c_float(self.tau), c_float(self.v_threshold), c_float(self.v_reset), c_uint(self.reset), c_uint(self.trace_id))
        return "{" + ", ".join(values) + "}"


@dataclass
class Operation:
    """One kernel call: reads ``inp``, writes ``out`` (in place when ``in_place``), uses ``scratch_bytes``."""

    ident: str  # C identifier prefix, unique in the model
    label: str  # the layer(s) it computes, for comments
    inp: CTensor
    out: CTensor

    @property
    def in_place(self) -> bool:
        return False

    @property
    def scratch_bytes(self) -> int:
        return 0

    def arrays(self) -> list[CArray]:
        """The const data this operation stores (flash)."""
        return []

    def declarations(self) -> str:
        """C definitions of its parameters (after its arrays)."""
        return ""

    def call(self, x: str, y: str, scratch: str) -> str:
        """The kernel call; ``x``, ``y`` and ``scratch`` are ``uint32_t *`` expressions."""
        raise NotImplementedError


@dataclass
class NormalizeOp(Operation):
    """``(pixels - mean) / std`` per channel, into the arena (the input stays the caller's)."""

    mean: np.ndarray
    std: np.ndarray

    def arrays(self) -> list[CArray]:
        return [
            CArray(f"{self.ident}_mean", "float", self.mean, "input mean per channel"),
            CArray(f"{self.ident}_std", "float", self.std, "input standard deviation per channel"),
        ]

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_out = {self.out.literal()};\n"

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_normalize(pixels, {self.ident}_mean, {self.ident}_std, &{self.ident}_out, (float *)({y}));"


@dataclass
class ConvOp(Operation):
    """A conv or linear layer with its folded affine and, if fused, the neurons after it.

    ``scale`` and ``bias`` (float64, per output channel) hold ``alpha``, the input's
    divisor, the layer's bias and any batch norm folded in; they are rounded to float32
    once, when written. ``bits`` (packed signs) selects the binarized kernels.
    """

    kernel: int
    stride: int
    padding: int
    groups: int
    bits: bytes | None
    weight: np.ndarray | None
    scale: np.ndarray
    bias: np.ndarray
    lif: LifParams | None = None

    @property
    def fan_in(self) -> int:
        return self.inp.channels // self.groups * self.kernel**2

    @property
    def uses_popcount(self) -> bool:
        """Binarized weights over bit planes: the AND + popcount kernel."""
        return self.bits is not None and self.inp.is_bits

    @property
    def scratch_bytes(self) -> int:
        if self.uses_popcount:
            words, patches = math.ceil(self.fan_in / 32), self.inp.steps * self.inp.planes
            return WORD_BYTES * (words + patches * (1 + words))
        row = self.inp.width + 2 * self.padding
        return FLOAT_BYTES * (row + (1 + (self.lif is not None)) * self.out.channels * self.out.width)

    def arrays(self) -> list[CArray]:
        shape = f"{self.out.channels}x{self.inp.channels // self.groups}x{self.kernel}x{self.kernel}"
        if self.bits is not None:
            weights = CArray(f"{self.ident}_bits", "uint8_t", self.bits, f"{self.label}: {shape} sign bits, MSB first, 1 = +1")
        else:
            weights = CArray(f"{self.ident}_w", "float", np.asarray(self.weight, np.float32), f"{self.label}: {shape} weights")
        return [
            weights,
            CArray(f"{self.ident}_scale", "float", self.scale.astype(np.float32), "y = acc * scale + bias per output channel"),
            CArray(f"{self.ident}_bias", "float", self.bias.astype(np.float32)),
        ]

    def declarations(self) -> str:
        text = ""
        lif = "NULL"
        if self.lif is not None:
            text += f"static const albsnn_lif {self.ident}_lif = {self.lif.literal()}; /* {self.lif.reset_name} reset */\n"
            lif = f"&{self.ident}_lif"
        geometry = ", ".join(c_uint(v) for v in (self.kernel, self.stride, self.padding, self.groups))
        bits, weight = (f"{self.ident}_bits", "NULL") if self.bits is not None else ("NULL", f"{self.ident}_w")
        return text + (
            f"static const albsnn_conv {self.ident} = {{\n"
            f"    {self.inp.literal()}, {self.out.literal()}, {geometry},\n"
            f"    {bits}, {weight}, {self.ident}_scale, {self.ident}_bias, {lif}\n}};\n"
        )

    def call(self, x: str, y: str, scratch: str) -> str:
        if self.uses_popcount:
            return f"albsnn_conv_bits(&{self.ident}, {x}, {y}, {scratch});"
        return f"albsnn_conv_rows(&{self.ident}, {x}, {y}, (float *)({scratch}));"


@dataclass
class AffineOp(Operation):
    """A batch norm with no conv or linear layer right before it: ``x * scale + bias`` per channel."""

    scale: np.ndarray
    bias: np.ndarray

    @property
    def in_place(self) -> bool:
        return not self.inp.is_bits

    def arrays(self) -> list[CArray]:
        return [
            CArray(f"{self.ident}_scale", "float", self.scale.astype(np.float32), f"{self.label}: y = x * scale + bias"),
            CArray(f"{self.ident}_bias", "float", self.bias.astype(np.float32)),
        ]

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_affine(&{self.ident}_in, {x}, {self.ident}_scale, {self.ident}_bias, (float *)({y}));"


@dataclass
class LifOp(Operation):
    """A neuron layer that no conv or linear layer feeds directly."""

    lif: LifParams

    def declarations(self) -> str:
        return (
            f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"
            f"static const albsnn_tensor {self.ident}_out = {self.out.literal()};\n"
            f"static const albsnn_lif {self.ident}_lif = {self.lif.literal()}; /* {self.lif.reset_name} reset */\n"
        )

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_lif_layer(&{self.ident}_in, {x}, &{self.ident}_lif, &{self.ident}_out, {y});"


@dataclass
class PoolOp(Operation):
    """Average or max pooling without padding."""

    kernel: int
    stride: int
    is_max: bool

    def declarations(self) -> str:
        values = ", ".join(c_uint(v) for v in (self.kernel, self.stride, int(self.is_max)))
        return f"static const albsnn_pool {self.ident} = {{{self.inp.literal()}, {self.out.literal()}, {values}}};\n"

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_pool2d(&{self.ident}, {x}, {y});"


@dataclass
class GapOp(Operation):
    """Global average pooling to one float per channel."""

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_gap(&{self.ident}_in, {x}, (float *)({y}));"


@dataclass
class StepMeanOp(Operation):
    """The logits: the mean over the time steps of the last layer, into the caller's buffer."""

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: str, y: str, scratch: str) -> str:
        return f"albsnn_step_mean(&{self.ident}_in, {x}, logits);"
