"""``summary(model)``: a per-layer table of a network's storage, as a value (larq's ``lq.models.summary``).

One row per layer: its type, output shape, weight shape, weight precision, the
elements it stores and the bits and bytes they take for inference (a binarized
weight at 1 bit plus its float32 per-channel scale; everything else float32,
see :mod:`albsnn_compress.storage`). Layers that store nothing (neurons,
pooling) are listed with 0 bits, so the table reads like the architecture.

Example:
    >>> table = summary(model)          # doctest: +SKIP
    >>> print(table)                    # a fixed-width text table
    >>> table.total_bytes, table.rows[2].precision
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.snn.spec import SpikingNet, layer_shapes
from albsnn_compress.storage import FLOAT_BITS, LayerStorage, layer_storage

__all__ = ["LayerSummary", "ModelSummary", "summary"]


@dataclass(frozen=True)
class LayerSummary:
    """One layer's row: what it is and what it stores.

    Attributes:
        name: module name (``layers.conv3``).
        type: the torch layer type (``Conv2d``, ``LIF``, ...).
        output_shape: per-sample output shape, ``None`` where unknown (not a :class:`SpikingNet`).
        weight_shape: the weight's shape, ``[]`` for layers without one.
        precision: ``"1-bit"`` for a binarized weight, ``"4-bit"`` for a 4-bit one, ``"float32"`` for a float
            one, ``"-"`` without.
        elements: tensor elements stored (weights, scales, biases, batch-norm tensors).
        bits: bits those take at inference.
    """

    name: str
    type: str
    output_shape: list[int] | None
    weight_shape: list[int]
    precision: str
    elements: int
    bits: int

    @property
    def bytes(self) -> float:
        """``bits / 8`` (fractional when a 1-bit tensor does not fill its last byte)."""
        return self.bits / 8


@dataclass(frozen=True)
class ModelSummary:
    """The table :func:`summary` returns; ``str()`` renders it as fixed-width text."""

    name: str
    timesteps: int | None
    rows: list[LayerSummary]
    float_bits: int

    @property
    def total_bits(self) -> int:
        """Bits the model stores for inference, as it is now."""
        return sum(row.bits for row in self.rows)

    @property
    def total_bytes(self) -> float:
        return self.total_bits / 8

    @property
    def saved_fraction(self) -> float:
        """Storage saved against the same model all in float32 (0.25 = 25 % smaller)."""
        return 1 - self.total_bits / self.float_bits if self.float_bits else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (rows as dicts, totals included)."""
        return {
            "name": self.name,
            "timesteps": self.timesteps,
            "rows": [{**asdict(row), "bytes": row.bytes} for row in self.rows],
            "total_bits": self.total_bits,
            "float_bits": self.float_bits,
            "saved_fraction": self.saved_fraction,
        }

    def __str__(self) -> str:
        header = ("layer", "type", "output", "weight", "precision", "elements", "bytes")
        body = [
            (
                row.name,
                row.type,
                _dims(row.output_shape),
                _dims(row.weight_shape),
                row.precision,
                f"{row.elements:,}",
                f"{row.bytes:,.1f}" if row.bits % 8 else f"{row.bits // 8:,}",
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        right = {5, 6}

        def render(line: tuple[str, ...]) -> str:
            return "  ".join(
                cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))
            )

        rule = "-" * len(render(header))
        steps = f", T={self.timesteps}" if self.timesteps is not None else ""
        total = (
            f"total: {self.total_bits:,} bits = {self.total_bytes:,.1f} bytes "
            f"({self.float_bits // 8:,} bytes all float32, {100 * self.saved_fraction:.1f} % saved)"
        )
        return "\n".join([f"{self.name}{steps}", rule, render(header), rule, *map(render, body), rule, total])


def _dims(shape: list[int] | None) -> str:
    if shape is None:
        return "?"
    return "x".join(map(str, shape)) if shape else "-"


def _row(name: str, module: nn.Module, storage: LayerStorage | None, output_shape: list[int] | None) -> LayerSummary:
    if storage is None:
        return LayerSummary(name, type(module).__name__, output_shape, [], "-", 0, 0)
    bits = storage.weight_bits
    precision = f"{bits}-bit" if bits != FLOAT_BITS else "float32" if storage.weight_shape else "-"
    return LayerSummary(
        name, storage.kind, output_shape, storage.weight_shape, precision, storage.params, storage.bits_after
    )


def summary(model: nn.Module) -> ModelSummary:
    """Per-layer storage table of ``model`` as it is now (binarized layers at 1 bit).

    For a :class:`SpikingNet` every layer of the spec is listed with its output
    shape; for another module, every module that stores tensors.
    """
    storage = {row.name: row for row in layer_storage(model, binarized_layers(model))}
    float_bits = sum(row.bits_before for row in storage.values())
    if isinstance(model, SpikingNet):
        shapes = [list(out) for _, out in layer_shapes(model.spec)]
        rows = [
            _row(f"layers.{name}", module, storage.get(f"layers.{name}"), shape)
            for (name, module), shape in zip(model.layers.named_children(), shapes)
        ]
        return ModelSummary(model.spec["name"], model.timesteps, rows, float_bits)
    modules = dict(model.named_modules())
    rows = [_row(name, modules[name], row, None) for name, row in storage.items()]
    return ModelSummary(type(model).__name__, None, rows, float_bits)
