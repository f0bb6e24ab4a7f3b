"""The operations of the C export: what each kernel call computes, its RAM and its C text.

An exported model is a straight line of kernel calls of ``albsnn_kernels.c``
(:mod:`albsnn_compress.formats.c.plan` builds the line from the layers). Each
operation here knows the tensors it reads and writes (:class:`CTensor`), the
scratch RAM its kernel needs, the const arrays it stores (flash) and the C that
declares its parameters and calls its kernel. The byte counts are those the
kernels index, so the arena the planner sizes from them is exactly what runs;
the kernels check the scratch they are given against their own
``albsnn_*_scratch`` functions and return an error status if it is short.

A conv or linear layer over bit planes (spikes, or counts of spikes) runs in one of two
variants (:data:`CONV_VARIANTS`, chosen per layer by the planner): ``dense`` visits every
input (``albsnn_conv_rows`` for float weights, the AND + popcount ``albsnn_conv_bits`` for
1-bit weights, ``albsnn_conv_code_rows`` for k-bit codes) and ``events`` visits only the
non-zero inputs (``albsnn_conv_events``, ``albsnn_conv_bit_events``, ``albsnn_conv_code_events``),
its weights stored pixel-major (``[group][ky][kx][c][out c]``) so that one event reads one
contiguous row of weights, one 64-bit mask per 64 output channels or one packed row of codes.
Both give the same bits: the float variants add the same terms in the same order (over bit
planes, ``(ky, kx, c)``), the 1-bit and k-bit variants the same integers.

The arena is a union of one array per element type (:data:`ARENA_MEMBERS`), and
every pointer into it is taken from the member of the type its buffer holds
(:func:`arena_pointer`): float values, ``uint32_t`` bit planes, the 1-bit kernels'
``uint64_t`` receptive fields, bit rows and counters and their ``int32_t`` sums. So the C never reads
an object through a pointer of another type, and each access is aligned for its
type (buffers start at 16-byte offsets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from albsnn_compress.formats.bitpack import pack_codes
from albsnn_compress.formats.c.text import CArray, c_float, c_uint

__all__ = [
    "CONV_VARIANTS",
    "FLOAT_BYTES",
    "WORD_BYTES",
    "FIELD_BYTES",
    "ARENA",
    "ARENA_MEMBERS",
    "arena_pointer",
    "CTensor",
    "LifParams",
    "CodeWeights",
    "Operation",
    "NormalizeOp",
    "ConvOp",
    "AffineOp",
    "LifOp",
    "PoolOp",
    "GapOp",
    "StepMeanOp",
]

CONV_VARIANTS = ("dense", "events")
"""How a conv or linear layer over bit planes visits its input: every element, or only the non-zero ones."""

FLOAT_BYTES = 4
WORD_BYTES = 4  # bit planes are stored in uint32 words, most significant bit first
FIELD_BYTES = 8  # receptive fields and weight rows are uint64 words in the popcount kernel
COUNT_BYTES = 4  # the popcount kernel's popcounts and integer sums are int32

ARENA = "albsnn_arena"
ARENA_MEMBERS: dict[str, tuple[str, int]] = {
    "float": ("f", FLOAT_BYTES),
    "uint32_t": ("u32", WORD_BYTES),
    "int32_t": ("i32", COUNT_BYTES),
    "uint64_t": ("u64", FIELD_BYTES),
}
"""The arena union's members: C element type -> (member name, element bytes)."""


def arena_pointer(ctype: str, offset: int) -> str:
    """The C expression of a ``ctype *`` to byte ``offset`` of the arena, from the union member of that type.

    Raises:
        ValueError: ``offset`` is not aligned for ``ctype`` (the planner's offsets always are).
    """
    member, size = ARENA_MEMBERS[ctype]
    if offset % size:
        raise ValueError(f"arena offset {offset} is not aligned for {ctype}")
    return f"{ARENA}.{member} + {offset // size}"


@dataclass(frozen=True)
class CTensor:
    """A tensor between two kernels (``albsnn_tensor`` in C).

    Attributes:
        channels, height, width: one time step's shape; features are ``channels x 1 x 1``.
        steps: 1 while every time step sees the same values (before the first neuron), else T.
        planes: 0 for float32 values; ``n >= 1`` for ``n`` bit planes of unsigned counts
            (spikes are one plane; an average pool of spikes counts them).
        divisor: the value of a count is ``count / divisor`` (the pooling window's size).
        pad: ``None`` for channel-major bit planes (or floats); bit planes as pixel-major rows (``uint64_t``
            words, ``[steps][height][planes][row_words]``, a pixel's channels side by side) with ``pad`` zero
            pixels on each side of a row: what the event-driven kernels read without gathering, set by the
            planner between two of them (:func:`~albsnn_compress.formats.c.plan.plan_model`).
    """

    channels: int
    height: int
    width: int
    steps: int
    planes: int = 0
    divisor: int = 1
    pad: int | None = None

    @property
    def numel(self) -> int:
        """Elements of one step."""
        return self.channels * self.height * self.width

    @property
    def is_bits(self) -> bool:
        return self.planes > 0

    @property
    def pixel_major(self) -> bool:
        """Bit planes as pixel-major rows (``pad`` is set)."""
        return self.pad is not None

    @property
    def row_words(self) -> int:
        """Pixel-major: ``uint64_t`` words of one row of one plane, the padded pixels and one spare word."""
        return math.ceil((self.width + 2 * (self.pad or 0)) * self.channels / 64) + 1

    @property
    def nbytes(self) -> int:
        """Bytes the kernels read or write: floats, ``ceil(numel / 32)`` words per plane and step, or pixel-major
        rows of :attr:`row_words` 64-bit words per row, plane and step."""
        if not self.is_bits:
            return FLOAT_BYTES * self.steps * self.numel
        if self.pixel_major:
            return FIELD_BYTES * self.steps * self.height * self.planes * self.row_words
        return WORD_BYTES * self.steps * self.planes * math.ceil(self.numel / 32)

    def literal(self) -> str:
        """The ``albsnn_tensor`` initializer."""
        fields = (
            self.channels,
            self.height,
            self.width,
            self.steps,
            self.planes,
            self.divisor,
            int(self.pixel_major),
            self.pad or 0,
        )
        return "{" + ", ".join(c_uint(v) for v in fields) + "}"

    @property
    def ctype(self) -> str:
        """The C element type the kernels read and write it as: ``uint32_t`` bit planes, ``uint64_t`` pixel-major
        rows or ``float`` values."""
        return ("uint64_t" if self.pixel_major else "uint32_t") if self.is_bits else "float"

    def pointer(self, offset: int) -> str:
        """A pointer of its element type to byte ``offset`` of the arena."""
        return arena_pointer(self.ctype, offset)

    def describe(self) -> str:
        """``16x28x28 spikes x T4`` and the like, for comments."""
        kind = (
            "float"
            if not self.is_bits
            else "spikes"
            if self.planes == 1 and self.divisor == 1
            else f"counts/{self.divisor}"
        )
        return (
            f"{self.channels}x{self.height}x{self.width} {kind}"
            + (f" x {self.steps} steps" if self.steps > 1 else "")
            + (" pixel-major" if self.pixel_major else "")
        )


def _reciprocal(tau: float) -> float:
    """``1 / tau`` when ``x / tau == x * (1 / tau)`` for every float32 ``x`` (``tau`` in float32 is a power of two),
    else 0: the ``inv_tau`` of ``albsnn_lif``, with which the kernels multiply instead of dividing."""
    mantissa, exponent = math.frexp(float(np.float32(tau)))
    return 1.0 / float(np.float32(tau)) if mantissa == 0.5 and -100 < exponent < 100 else 0.0


@dataclass(frozen=True)
class LifParams:
    """One neuron layer's constants (``albsnn_lif``) and the C constants of its rules.

    Attributes:
        taus, thresholds: one value for every channel, or one per channel (then stored as const arrays).
        v_reset: the reset and resting potential.
        reset: its reset rule's C constant (``ALBSNN_RESET_HARD``); ``reset_name`` the rule's name, for comments.
        trace_id: the neuron layer's index (``ALBSNN_TRACE``).
        charge: its charge rule's C constant (``ALBSNN_CHARGE_DECAY_INPUT``: leak, the input decays too).
        strict: fire on ``h > v_threshold`` instead of ``h >= v_threshold``.
    """

    taus: tuple[float, ...]
    thresholds: tuple[float, ...]
    v_reset: float
    reset: str
    reset_name: str
    trace_id: int
    charge: str = "ALBSNN_CHARGE_DECAY_INPUT"
    strict: bool = False

    def tau(self, channel: int) -> np.float32:
        """Channel ``channel``'s ``tau`` in float32, as the kernels hold it."""
        tau: np.float32 = np.float32(self.taus[channel if len(self.taus) > 1 else 0])
        return tau

    def threshold(self, channel: int) -> np.float32:
        """Channel ``channel``'s ``v_threshold`` in float32, as the kernels hold it."""
        threshold: np.float32 = np.float32(self.thresholds[channel if len(self.thresholds) > 1 else 0])
        return threshold

    def rest_fires(self, pre: np.ndarray, channel: int) -> np.ndarray:
        """The kernels' step-0 spikes of channel ``channel`` for float32 inputs ``pre``: ``lif_rest`` then ``lif_fires``
        of ``albsnn_kernels.c``, the same IEEE float32 operations in numpy."""
        tau, inverse = self.tau(channel), _reciprocal(float(self.tau(channel)))
        if self.charge != "ALBSNN_CHARGE_DECAY_INPUT":
            charged = pre
        else:
            charged = pre * np.float32(inverse) if inverse else pre / tau
        h = charged + np.float32(self.v_reset)
        threshold = self.threshold(channel)
        return np.asarray(h > threshold if self.strict else h >= threshold, dtype=bool)

    def arrays(self, ident: str) -> list[CArray]:
        """The per-channel ``taus``, their reciprocals and ``thresholds`` (const), as far as they are per channel."""
        arrays = []
        if len(self.taus) > 1:
            taus = np.asarray(self.taus, np.float32)
            arrays += [
                CArray(f"{ident}_taus", "float", taus, "neuron tau per channel"),
                CArray(f"{ident}_inv_taus", "float", np.array([_reciprocal(t) for t in taus], np.float32)),
            ]
        if len(self.thresholds) > 1:
            thresholds = np.asarray(self.thresholds, np.float32)
            arrays.append(CArray(f"{ident}_thresholds", "float", thresholds, "neuron v_threshold per channel"))
        return arrays

    def literal(self, ident: str) -> str:
        """The ``albsnn_lif`` initializer; ``ident`` names the arrays of :meth:`arrays`."""
        per_tau = len(self.taus) > 1
        values = (
            c_float(self.taus[0]),
            c_float(self.thresholds[0]),
            c_float(self.v_reset),
            c_float(_reciprocal(self.taus[0])),
            self.charge,
            self.reset,
            c_uint(self.strict),
            c_uint(self.trace_id),
            f"{ident}_taus" if per_tau else "NULL",
            f"{ident}_inv_taus" if per_tau else "NULL",
            f"{ident}_thresholds" if len(self.thresholds) > 1 else "NULL",
        )
        return "{" + ", ".join(values) + "}"

    def declaration(self, ident: str) -> str:
        """The C definition of ``{ident}_lif``, after :meth:`arrays`."""
        rules = f"{self.reset_name} reset, {self.charge}, " + ("h > v_th" if self.strict else "h >= v_th")
        return f"static const albsnn_lif {ident}_lif = {self.literal(ident)}; /* {rules} */\n"


@dataclass(frozen=True)
class CodeWeights:
    """A k-bit layer's weights (k = 2, 4, 8; :mod:`albsnn_compress.precision`): the weight is ``code * scale`` per
    output channel, the scale (with what folds into it) being the layer's ``ConvOp.scale``.

    Attributes:
        codes: int8 ``[C_out, C_in / groups, k, k]`` (a linear layer ``[C_out, C_in]``), each in ``[-Q, Q]``.
        bits: k.
    """

    codes: np.ndarray
    bits: int

    @property
    def max_code(self) -> int:
        """``Q = 2^(k-1) - 1``: the largest magnitude of a code."""
        return (1 << (self.bits - 1)) - 1

    def packed(self) -> bytes:
        """The codes in the container's order, packed as the container and the ONNX export pack them (``pack_codes``:
        k-bit two's complement fields, least significant first): what ``albsnn_conv_code_rows`` reads."""
        return pack_codes(self.codes, self.bits)

    def pixel_major(self, groups: int) -> bytes:
        """The codes as ``albsnn_conv_code_events`` reads them: per ``(group, ky, kx, c)`` the row of the group's
        output channels, packed as :meth:`packed` from a byte of its own (the bits past a row zero)."""
        cout, cin = self.codes.shape[0] // groups, self.codes.shape[1]
        rows = self.codes.reshape(groups, cout, cin, -1).transpose(0, 3, 2, 1).reshape(-1, cout)  # [g][ky kx][c][co]
        per_byte = 8 // self.bits
        padded = np.zeros((len(rows), -(-cout // per_byte) * per_byte), np.int8)  # zero codes: zero bits
        padded[:, :cout] = rows
        return pack_codes(padded, self.bits)


@dataclass
class Operation:
    """One kernel call: reads ``inp``, writes ``out`` (in place when ``in_place``), uses ``scratch_bytes``.

    Every kernel returns an ``int`` status (``ALBSNN_OK`` or a negative ``ALBSNN_ERR_*``);
    :meth:`call` is that call as an expression.
    """

    ident: str  # C identifier prefix, unique in the model
    label: str  # the layer(s) it computes, for comments
    inp: CTensor
    out: CTensor

    @property
    def function(self) -> str:
        """The name of the kernel it calls (a C function of ``albsnn_kernels.c``)."""
        raise NotImplementedError

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

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        """The kernel call, an ``int`` expression; ``x``, ``y``, ``scratch``: byte offsets in the arena.

        ``x`` is ``None`` for the caller's ``pixels``, ``y`` for the caller's ``logits``.
        """
        raise NotImplementedError

    def x(self, offset: int | None) -> str:
        """The input pointer: the caller's pixels, or the arena as ``inp``'s element type."""
        return "pixels" if offset is None else self.inp.pointer(offset)

    def y(self, offset: int | None) -> str:
        """The output pointer: the caller's logits, or the arena as ``out``'s element type."""
        return "logits" if offset is None else self.out.pointer(offset)


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

    @property
    def function(self) -> str:
        return "albsnn_normalize"

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_out = {self.out.literal()};\n"

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        pixels = "pixels" if x is None else arena_pointer("float", x)
        return f"{self.function}({pixels}, {self.ident}_mean, {self.ident}_std, &{self.ident}_out, {self.y(y)})"


@dataclass
class ConvOp(Operation):
    """A conv or linear layer with its folded affine and, if fused, the neurons after it.

    ``scale`` and ``bias`` (float64, per output channel) hold ``alpha`` (or a k-bit layer's
    code scale), the input's divisor, the layer's bias and any batch norm folded in; they are
    rounded to float32 once, when written. ``bits`` (packed signs) selects the binarized kernels,
    ``codes`` the k-bit ones (``weight`` is then ``None``); ``variant`` (:data:`CONV_VARIANTS`, set
    with :meth:`choose`) the dense or the event-driven one over bit planes; ``density`` is the
    measured fraction of non-zero inputs it was chosen by (``None``: not measured).
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
    variant: str = "dense"
    density: float | None = None
    codes: CodeWeights | None = None

    def choose(self, variant: str, density: float | None = None) -> None:
        """Set the kernel variant (:data:`CONV_VARIANTS`); ``events`` needs bit planes in.

        Raises:
            ValueError: an unknown variant, or events over float values.
        """
        if variant not in CONV_VARIANTS or (variant == "events" and not self.inp.is_bits):
            raise ValueError(f"layer {self.label}: no {variant!r} kernel over {self.inp.describe()}")
        self.variant, self.density = variant, density

    @property
    def fan_in(self) -> int:
        return self.inp.channels // self.groups * self.kernel**2

    @property
    def events(self) -> bool:
        """The event-driven kernels: only the non-zero inputs are visited."""
        return self.variant == "events"

    @property
    def integer_sums(self) -> bool:
        """Integer sums in the kernel: 1-bit weights over bit planes, or k-bit codes over them event by event (the
        dense k-bit kernel sums the same integers as floats, exactly)."""
        return self.inp.is_bits and (self.bits is not None or (self.codes is not None and self.events))

    @property
    def max_weight(self) -> int:
        """The largest magnitude of the integer a sum adds per unit of input: a sign 1, a code ``Q``."""
        return 1 if self.codes is None else self.codes.max_code

    @property
    def uses_popcount(self) -> bool:
        """Binarized weights over bit planes, dense: the AND + popcount kernel."""
        return self.bits is not None and self.inp.is_bits and not self.events

    @property
    def uses_bit_events(self) -> bool:
        """Binarized weights over bit planes, event by event: bit-sliced counters (``albsnn_conv_bit_events``)."""
        return self.bits is not None and self.events

    @property
    def views(self) -> tuple[CTensor, CTensor]:
        """Input and output as the kernel sees them: the dense float kernel runs a 1x1 conv over one long row."""
        inp, out = self.inp, self.out
        dense = self.function in ("albsnn_conv_rows", "albsnn_conv_code_rows")
        if not dense or (self.kernel, self.stride, self.padding) != (1, 1, 0):
            return inp, out
        flat_in = CTensor(inp.channels, 1, inp.height * inp.width, inp.steps, inp.planes, inp.divisor)
        return flat_in, CTensor(out.channels, 1, out.height * out.width, out.steps, out.planes, out.divisor)

    @property
    def function(self) -> str:
        if self.codes is not None:
            return "albsnn_conv_code_events" if self.events else "albsnn_conv_code_rows"
        if self.events:
            return "albsnn_conv_bit_events" if self.bits is not None else "albsnn_conv_events"
        return "albsnn_conv_bits" if self.uses_popcount else "albsnn_conv_rows"

    @property
    def lane_words(self) -> int:
        """``albsnn_conv_bit_events``: 64-bit words of a group's output channels."""
        return math.ceil(self.out.channels // self.groups / 64)

    @property
    def pixel_row_words(self) -> int:
        """``albsnn_conv_bit_events``: 64-bit words of a pixel-major bit row (padded), one spare."""
        return math.ceil((self.inp.width + 2 * self.padding) * (self.inp.channels // self.groups) / 64) + 1

    @property
    def ring_pixels(self) -> int:
        """``albsnn_conv_events`` with a firing range: padded pixels of an input row."""
        return self.inp.width + 2 * self.padding

    @property
    def ring_list_size(self) -> int:
        """``albsnn_conv_events`` with a firing range: entries of one row list of its ring, every bit of a padded
        row and 16 more (a chunked copy reads past a slice)."""
        return self.ring_pixels * (self.inp.channels // self.groups) + 16

    @property
    def lane_planes(self) -> int:
        """``albsnn_conv_bit_events``: counter planes, the bits of the largest sum ``fan_in (2^planes - 1)``,
        and room for a carry-save tree (ones to sixteens) at the top input plane: ``planes + 4``."""
        return max(self.inp.planes + 4, int(self.fan_in * ((1 << self.inp.planes) - 1)).bit_length())

    @property
    def fire_depth(self) -> int:
        """``albsnn_conv_bit_events`` with a firing range: ``D``, the top bit of its counters (``2^D > 2 N + 1``
        for the largest sum ``N = fan_in (2^planes - 1)``, and room for a carry-save tree at the top input plane)."""
        return max(int(self.fan_in * ((1 << self.inp.planes) - 1)).bit_length() + 1, self.inp.planes + 3)

    @property
    def scratch_words(self) -> int:
        """The ``uint64_t`` scratch of the kernels over bit planes; 0 for ``albsnn_conv_rows``.

        ``albsnn_conv_bits_scratch_words``: a weight row, one partial sum per output, every receptive field of
        one output row. ``albsnn_conv_bit_events_scratch_words``, ``albsnn_conv_events_scratch_words`` and
        ``albsnn_conv_code_events_scratch_words``: the input gathered into pixel-major bit rows (none when it
        arrives pixel-major, ``CTensor.pad``) and where an output row's kernel rows start (k-bit: nothing more);
        then (1-bit) one output's counters and carry-save tree (16 masks) per
        64 output channels, or with a firing range the decision's constants (``2 D + 5`` words per group and 64
        channels, :attr:`fire_depth`), one word's counters (``D + 1``) and the pending masks of one output (one
        64-channel word: 48, a word's events and 6 more; else ``lanes_count``'s counters and trees); (float) a
        batch of 64 event positions and its end, or with a firing range the ring of ``kernel`` row lists (per row
        :attr:`ring_list_size` event positions, :attr:`ring_pixels` + 1 pixel starts and a tag), one output's
        events (``fan_in`` and 16 more, a chunked copy's overrun, the end among them) and its spikes.
        """
        if self.events:  # a channel-major input gathered into pixel-major rows (a pixel-major one is read as it is)
            gathered = self.inp.steps * self.groups * self.inp.height * self.inp.planes * self.pixel_row_words
            rows = 0 if self.inp.pixel_major else gathered
            rows += self.inp.steps * self.groups * self.inp.planes * self.kernel  # where an output row's rows start
            if self.codes is not None:
                return rows
            if self.bits is None:  # a batch of event positions and its end; one step: the ring of row lists
                if self.one_step_float:  # per slot (k): the list, pixel starts, a tag; one output's events, end, spikes
                    ring = self.kernel * (self.ring_list_size + self.ring_pixels + 2)
                    return rows + ring + self.fan_in + 16 + math.ceil(self.out.channels // self.groups / 64)
                return rows + 64 + 1
            planes, lanes = self.lane_planes, self.lane_words
            if self.fire_ranges() is not None:  # one step: constants, one lane word's counters, pending masks
                depth = self.fire_depth
                if lanes == 1:  # cell_events' pending masks: one word's events (over counts, count copies each)
                    most = (1 << self.inp.planes) - 1
                    listed = 48 + (64 if self.inp.planes == 1 else max(256, 16 * most)) + 6
                else:  # lanes_count's counters and trees
                    listed = lanes * (planes + 16)
                return rows + self.groups * lanes * (2 * depth + 5) + depth + 1 + listed
            return rows + lanes * (planes + 16)
        if not self.uses_popcount:
            return 0
        words, fields = math.ceil(self.fan_in / 64), self.out.width * self.inp.steps * self.inp.planes
        return words * (1 + fields) + self.out.width

    @property
    def scratch_counts(self) -> int:
        """The integer kernels' ``int32_t`` scratch; 0 for the float kernels.

        ``albsnn_conv_bits_scratch_counts``: the fields' popcounts, ``popcount(w & field)`` per
        output, the sums per step and output. ``albsnn_conv_bit_events_scratch_counts``: without a
        firing range, one output's sums per step and channel of its group.
        ``albsnn_conv_code_events_scratch_counts``: one output's sums per step and channel of its group.
        """
        if self.codes is not None:
            return self.inp.steps * (self.out.channels // self.groups) if self.events else 0
        if self.uses_bit_events:
            return 0 if self.fire_ranges() is not None else self.inp.steps * (self.out.channels // self.groups)
        if not self.uses_popcount:
            return 0
        fields = self.out.width * self.inp.steps * self.inp.planes
        return fields + self.out.width * (1 + self.inp.steps)

    @property
    def scratch_floats(self) -> int:
        """The float kernels' scratch; 0 for the 1-bit kernels over bit planes.

        ``albsnn_conv_rows_scratch``: one padded input row, one output row of sums and, with
        neurons over several steps, one of membranes. ``albsnn_conv_events_scratch_floats``: one
        output's sums over the channels of its group, with neurons over several steps their
        membranes, the values of a batch of 64 events (with a firing range over counts: the values of
        the ring's row lists and of one output's events), the value ``count / divisor`` of every count
        and with a firing range the ranges as floats.
        """
        if self.integer_sums:
            return 0
        inp, out = self.views
        membranes = self.lif is not None and out.steps > 1
        if self.events:  # one output's sums and membranes, a batch's values, the value of every count, the ranges
            if self.one_step_float:  # over counts the ring's values and one output's
                valued = inp.planes > 1 or inp.divisor != 1
                listed = self.kernel * self.ring_list_size + self.fan_in + 16 if valued else 0
                return out.channels // self.groups + listed + (1 << inp.planes) + 2 * out.channels
            return (1 + membranes) * (out.channels // self.groups) + 64 + (1 << inp.planes)
        return inp.width + 2 * self.padding + (1 + membranes) * out.channels * out.width

    @property
    def scratch_bytes(self) -> int:
        return FIELD_BYTES * self.scratch_words + COUNT_BYTES * self.scratch_counts + FLOAT_BYTES * self.scratch_floats

    def fire_ranges(self) -> np.ndarray | None:
        """``[lo, hi]`` per output channel: with one time step the neuron fires iff ``lo <= acc <= hi``.

        The kernel's float path, ``h = (float)acc * scale + bias``, then the charge from rest
        (``h / tau + v_reset``, or ``h + v_reset`` without input decay), then ``h >= v_threshold``
        (strict: ``>``), each with the channel's constants, is a composition of monotone float32
        operations, so the integers ``acc`` where it fires form one interval; a binary search over
        ``|acc| <= fan_in Q (2^planes - 1)`` (``Q``: :attr:`max_weight`) with numpy float32 (the same IEEE
        operations) finds it. ``None`` when it does not apply (several steps, no neuron, float sums).
        """
        if not self.integer_sums or self.lif is None or self.out.steps != 1:
            return None
        bound = self.fan_in * self.max_weight * (2**self.inp.planes - 1)
        scales, biases = self.scale.astype(np.float32), self.bias.astype(np.float32)
        lif = self.lif
        return np.array(
            [_fire_range(s, b, lif, co, bound) for co, (s, b) in enumerate(zip(scales, biases))], dtype=np.int32
        )

    @property
    def one_step_float(self) -> bool:
        """Neurons over one time step after a float sum (float weights, k-bit codes summed densely, or any weights
        over float values): the kernel decides with :meth:`fire_keys`."""
        return self.lif is not None and self.out.steps == 1 and not self.integer_sums

    def fire_keys(self) -> np.ndarray | None:
        """``[lo, hi]`` per output channel for a float sum ``acc``: with one time step the neuron fires iff
        ``lo <= key(acc) <= hi``, ``key`` the float's order key (its bits as a signed integer, the magnitude
        bits of a negative float flipped: ``albsnn_float_order`` in the kernels, :func:`float_keys` here).

        The same monotone chain as :meth:`fire_ranges` (``acc * scale + bias``, the charge from rest, the
        threshold), over every float32 ``acc`` in order instead of the integers: the floats where it fires
        are one run of keys, found by a binary search with numpy float32, the same IEEE operations (the
        infinities included where they fire; a NaN never does, as in the chain). ``None`` when it does not
        apply (several steps, no neuron, integer sums).
        """
        if not self.one_step_float:
            return None
        assert self.lif is not None
        return _fire_key_ranges(self.scale.astype(np.float32), self.bias.astype(np.float32), self.lif)

    def pixel_major(self) -> np.ndarray:
        """The float weights as ``albsnn_conv_events`` reads them: ``[group][ky][kx][c][out c of the group]``."""
        cout, k = self.out.channels // self.groups, self.kernel
        weight = np.asarray(self.weight, np.float32).reshape(self.groups, cout, -1, k, k)
        return np.ascontiguousarray(weight.transpose(0, 3, 4, 2, 1)).reshape(-1)

    def lane_masks(self) -> bytes:
        """The sign bits as ``albsnn_conv_bit_events`` reads them: per ``(group, ky, kx, c)``, the group's
        output channels in 64-bit words of 8 bytes, least significant byte first, bit ``l`` of word ``q``
        for channel ``64 q + l`` (1 = +1), the bits past the last channel zero."""
        if self.bits is None:
            raise ValueError(f"layer {self.label} has float weights")
        cout, k = self.out.channels // self.groups, self.kernel
        count = self.out.channels * self.fan_in
        signs = np.unpackbits(np.frombuffer(self.bits, np.uint8), count=count)
        taps = signs.reshape(self.groups, cout, -1, k, k).transpose(0, 3, 4, 2, 1)  # [g][ky][kx][c][co]
        lanes = np.zeros((*taps.shape[:-1], 64 * math.ceil(cout / 64)), np.uint8)
        lanes[..., :cout] = taps
        return np.packbits(lanes, axis=-1, bitorder="little").tobytes()

    @property
    def weight_name(self) -> str:
        """The C name of its weight array: ``_bits``, ``_masks`` (1-bit, pixel-major), ``_codes``, ``_codes_t``
        (k-bit, pixel-major), ``_w``, ``_wt`` (pixel-major)."""
        if self.codes is not None:
            return self.ident + ("_codes_t" if self.events else "_codes")
        suffix = ("_masks" if self.events else "_bits") if self.bits is not None else ("_wt" if self.events else "_w")
        return self.ident + suffix

    def _weight_array(self) -> CArray:
        """Its weights as its kernel reads them: sign bits, lane masks, k-bit codes, or float32 weights."""
        shape = f"{self.out.channels}x{self.inp.channels // self.groups}x{self.kernel}x{self.kernel}"
        order = f"pixel-major [group][ky][kx][c][out c], {self.groups} group(s)"
        if self.codes is not None:
            layout = f"{self.codes.bits}-bit codes, two's complement, least significant first"
            if self.events:
                data, what = self.codes.pixel_major(self.groups), f"{order}, each row from a byte of its own"
            else:
                data, what = self.codes.packed(), "the container's order"
            return CArray(self.weight_name, "uint8_t", data, f"{self.label}: {shape} {layout}, {what}")
        if self.bits is not None and self.events:
            return CArray(
                self.weight_name,
                "uint8_t",
                self.lane_masks(),
                f"{self.label}: {shape} sign bits, pixel-major [group][ky][kx][c][out c] in 64-bit lanes",
            )
        if self.bits is not None:
            return CArray(self.weight_name, "uint8_t", self.bits, f"{self.label}: {shape} sign bits, MSB first, 1 = +1")
        if self.events:
            return CArray(self.weight_name, "float", self.pixel_major(), f"{self.label}: {shape} weights, {order}")
        return CArray(self.weight_name, "float", np.asarray(self.weight, np.float32), f"{self.label}: {shape} weights")

    def arrays(self) -> list[CArray]:
        arrays = [
            self._weight_array(),
            CArray(
                f"{self.ident}_scale",
                "float",
                self.scale.astype(np.float32),
                "y = acc * scale + bias per output channel",
            ),
            CArray(f"{self.ident}_bias", "float", self.bias.astype(np.float32)),
        ]
        fires = self.fire_ranges()
        if fires is not None:
            arrays.append(CArray(f"{self.ident}_fires", "int32_t", fires, "the neuron fires iff lo <= acc <= hi"))
        keys = self.fire_keys()
        if keys is not None:
            arrays.append(
                CArray(f"{self.ident}_fire_keys", "int32_t", keys, "the neuron fires iff lo <= key(acc) <= hi")
            )
        return arrays + (self.lif.arrays(self.ident) if self.lif is not None else [])

    def declarations(self) -> str:
        text = ""
        lif = "NULL"
        if self.lif is not None:
            text += self.lif.declaration(self.ident)
            lif = f"&{self.ident}_lif"
        geometry = ", ".join(c_uint(v) for v in (self.kernel, self.stride, self.padding, self.groups))
        bits, weight = (self.weight_name, "NULL") if self.bits is not None else ("NULL", self.weight_name)
        fires = "NULL" if self.fire_ranges() is None else f"{self.ident}_fires"
        if self.one_step_float:
            fires = f"{self.ident}_fire_keys"
        inp, out = self.views
        if self.codes is not None:  # albsnn_code_conv: the layer (no bits, no float weights), its codes and k
            return text + (
                f"static const albsnn_code_conv {self.ident} = {{\n"
                f"    {{{inp.literal()}, {out.literal()}, {geometry},\n"
                f"     NULL, NULL, {self.ident}_scale, {self.ident}_bias, {lif}, {fires}}},\n"
                f"    {self.weight_name}, {c_uint(self.codes.bits)}\n}};\n"
            )
        return text + (
            f"static const albsnn_conv {self.ident} = {{\n"
            f"    {inp.literal()}, {out.literal()}, {geometry},\n"
            f"    {bits}, {weight}, {self.ident}_scale, {self.ident}_bias, {lif}, {fires}\n}};\n"
        )

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        if self.integer_sums:  # uint64_t words first (16-byte aligned), then int32_t
            words = arena_pointer("uint64_t", scratch)
            counts = arena_pointer("int32_t", scratch + FIELD_BYTES * self.scratch_words)
            return (
                f"{self.function}(&{self.ident}, {self.x(x)}, {self.y(y)}, "
                f"{words}, {c_uint(self.scratch_words)}, {counts}, {c_uint(self.scratch_counts)})"
            )
        if self.events:  # uint64_t words first, then the floats
            words = arena_pointer("uint64_t", scratch)
            floats = arena_pointer("float", scratch + FIELD_BYTES * self.scratch_words)
            return (
                f"{self.function}(&{self.ident}, {self.x(x)}, {self.y(y)}, "
                f"{words}, {c_uint(self.scratch_words)}, {floats}, {c_uint(self.scratch_floats)})"
            )
        floats = arena_pointer("float", scratch)
        return f"{self.function}(&{self.ident}, {self.x(x)}, {self.y(y)}, {floats}, {c_uint(self.scratch_floats)})"


def _fires(acc: np.ndarray, scale: np.float32, bias: np.float32, lif: LifParams, channel: int) -> np.ndarray:
    """The kernel's one-step spike decision of channel ``channel`` for integer sums ``acc``, in float32 as the C
    computes it: ``acc * scale + bias``, then :meth:`LifParams.rest_fires`."""
    return lif.rest_fires(acc.astype(np.float32) * scale + bias, channel)


def _fire_range(scale: np.float32, bias: np.float32, lif: LifParams, channel: int, bound: int) -> tuple[int, int]:
    """``(lo, hi)`` with ``lo <= acc <= hi`` exactly where the monotone decision fires, ``|acc| <= bound``."""
    ends = _fires(np.array([-bound, bound]), scale, bias, lif, channel)
    if ends[0] == ends[1]:  # monotone and equal at both ends: always or never
        return (-(2**31), 2**31 - 1) if ends[0] else (1, 0)
    rising = bool(ends[1])
    low, high = -bound, bound  # the decision changes between low and high
    while high - low > 1:
        middle = (low + high) // 2
        if bool(_fires(np.array([middle]), scale, bias, lif, channel)[0]) == rising:
            high = middle
        else:
            low = middle
    return (high, 2**31 - 1) if rising else (-(2**31), low)


KEY_LIMITS = (-2139095041, 2139095040)
"""The order keys of -inf and +inf: every float but a NaN has its key in between."""


def float_keys(values: np.ndarray) -> np.ndarray:
    """The order keys of float32 ``values`` (int64): ``a < b`` iff ``key(a) < key(b)``, -0 just below +0."""
    bits = np.asarray(values, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def key_floats(keys: np.ndarray) -> np.ndarray:
    """The float32 values of order ``keys`` (the inverse of :func:`float_keys`)."""
    keys = np.asarray(keys, np.int64)
    return np.where(keys < 0, keys ^ 0x7FFFFFFF, keys).astype(np.int32).view(np.float32)


def _key_fires(keys: np.ndarray, scale: np.ndarray, bias: np.ndarray, lif: LifParams) -> np.ndarray:
    """The one-step spike decisions of every channel (the last axis) for the floats of order ``keys``: the
    kernels' ``acc * scale + bias``, then :meth:`LifParams.rest_fires`, in float32."""
    with np.errstate(all="ignore"):
        pre = key_floats(keys) * scale + bias
        return np.stack([lif.rest_fires(pre[..., co], co) for co in range(pre.shape[-1])], axis=-1)


def _fire_key_ranges(scale: np.ndarray, bias: np.ndarray, lif: LifParams) -> np.ndarray:
    """``[lo, hi]`` of order keys per channel where the monotone one-step decision fires (``(1, 0)``: never)."""
    channels = len(scale)
    finite = (
        int(float_keys(np.float32(-np.finfo(np.float32).max))),
        int(float_keys(np.float32(np.finfo(np.float32).max))),
    )
    ends = _key_fires(np.array([[finite[0]] * channels, [finite[1]] * channels]), scale, bias, lif)
    rising = ends[1] & ~ends[0]
    changes = ends[0] != ends[1]
    low = np.full(channels, finite[0], np.int64)  # the decision changes between low and high
    high = np.full(channels, finite[1], np.int64)
    while True:
        open_ = changes & (high - low > 1)
        if not open_.any():
            break
        middle = (low + high) // 2
        fired = _key_fires(middle[None], scale, bias, lif)[0]
        toward_high = (fired == rising) & open_
        high = np.where(toward_high, middle, high)
        low = np.where(open_ & ~toward_high, middle, low)
    lo = np.where(changes & rising, high, finite[0])
    hi = np.where(changes & ~rising, low, finite[1])
    infinities = _key_fires(np.array([[KEY_LIMITS[0]] * channels, [KEY_LIMITS[1]] * channels]), scale, bias, lif)
    lo = np.where((lo == finite[0]) & infinities[0], KEY_LIMITS[0], lo)
    hi = np.where((hi == finite[1]) & infinities[1], KEY_LIMITS[1], hi)
    never = ~changes & ~ends[0]
    lo, hi = np.where(never, 1, lo), np.where(never, 0, hi)
    return np.stack([lo, hi], axis=1).astype(np.int32)


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
            CArray(
                f"{self.ident}_scale", "float", self.scale.astype(np.float32), f"{self.label}: y = x * scale + bias"
            ),
            CArray(f"{self.ident}_bias", "float", self.bias.astype(np.float32)),
        ]

    @property
    def function(self) -> str:
        return "albsnn_affine"

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        return f"{self.function}(&{self.ident}_in, {self.x(x)}, {self.ident}_scale, {self.ident}_bias, {self.y(y)})"


@dataclass
class LifOp(Operation):
    """A neuron layer that no conv or linear layer feeds directly."""

    lif: LifParams

    @property
    def function(self) -> str:
        return "albsnn_lif_layer"

    def arrays(self) -> list[CArray]:
        return self.lif.arrays(self.ident)

    def declarations(self) -> str:
        return (
            f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"
            f"static const albsnn_tensor {self.ident}_out = {self.out.literal()};\n"
            f"{self.lif.declaration(self.ident)}"
        )

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        return f"{self.function}(&{self.ident}_in, {self.x(x)}, &{self.ident}_lif, &{self.ident}_out, {self.y(y)})"


@dataclass
class PoolOp(Operation):
    """Average or max pooling without padding."""

    kernel: int
    stride: int
    is_max: bool

    @property
    def function(self) -> str:
        return "albsnn_pool2d"

    def declarations(self) -> str:
        values = ", ".join(c_uint(v) for v in (self.kernel, self.stride, int(self.is_max)))
        return f"static const albsnn_pool {self.ident} = {{{self.inp.literal()}, {self.out.literal()}, {values}}};\n"

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        return f"{self.function}(&{self.ident}, {self.x(x)}, {self.y(y)})"


@dataclass
class GapOp(Operation):
    """Global average pooling to one float per channel."""

    @property
    def function(self) -> str:
        return "albsnn_gap"

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        return f"{self.function}(&{self.ident}_in, {self.x(x)}, {self.y(y)})"


@dataclass
class StepMeanOp(Operation):
    """The logits: the mean over the time steps of the last layer, into the caller's buffer."""

    @property
    def function(self) -> str:
        return "albsnn_step_mean"

    def declarations(self) -> str:
        return f"static const albsnn_tensor {self.ident}_in = {self.inp.literal()};\n"

    def call(self, x: int | None, y: int | None, scratch: int) -> str:
        return f"{self.function}(&{self.ident}_in, {self.x(x)}, {self.y(y)})"
