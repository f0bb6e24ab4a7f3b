"""Export a :class:`SpikingNet` as a folder of plain C99 for microcontrollers, its 1-bit and k-bit weights kept packed.

``albsnn-compress export model.albsnn --format c -o model_c/`` writes::

    model_c/albsnn_model.h     int albsnn_infer(const float *pixels, float *logits); status codes, ALBSNN_* macros
    model_c/albsnn_model.c     const weights (flash), the static arena (RAM), the layer sequence
    model_c/albsnn_kernels.c   the kernels (+ albsnn_kernels.h), the same for every model
    model_c/README.md          how to build it for a host and for a Cortex-M

The folder is one complete set (:class:`~albsnn_compress.files.output_set.OutputSet`,
as ``compress`` writes its files): the files are staged in ``model_c/.albsnn-staging-*/``,
renamed into place together and ``model_c/manifest.json`` (names, sizes, SHA-256) is
written last, so a killed export leaves the previous complete set or a folder without a
manifest (marked incomplete), never a header and a source from different runs passing
for one; the next export removes what the killed one left. Each file name obeys the
output rules (not the input, not a symbolic link, not a FIFO or device), checked before
anything is written.

``albsnn_infer`` returns ``ALBSNN_OK`` (0) or a negative ``ALBSNN_ERR_*`` status (a
``NULL`` pointer, or a kernel that refused its arguments); the headers are usable
from C++ (``extern "C"``).

How it computes (``docs/deploy.md`` writes the arithmetic out): a binarized
conv/linear layer reads its sign bits as the container stores them and, over
spikes (bit maps in RAM), sums ``alpha * (2 popcount(bits & spikes) -
popcount(spikes))`` with integer adds only; a 2-, 4- or 8-bit layer
(:mod:`albsnn_compress.precision`) keeps its integer codes packed at k bits and sums
them (int32 over spikes, float over the first layer's values) before one multiply by
its channel's scale; the first layer and float layers run in float32; batch norm folds
into a per-channel scale and bias; neurons run inside the layer that feeds them. The
layers are dispatched on the layer-type registry
(:data:`~albsnn_compress.formats.c.plan.C_EMITTERS`); anything else is refused,
named. ``weights="float"`` stores every weight as float32 (the values the 1-bit and
k-bit layers compute with) and runs the float kernels (the same code otherwise), the
baseline the benchmark compares against.

Each layer over spikes runs a dense or an event-driven kernel (the same bits either way):
``kernels="auto"`` picks by the fraction of its inputs that are not zero on ``calibration``
images (``export --format c`` passes the first 256 training images of the container's dataset),
``"dense"`` and ``"events"`` take one kind everywhere; :attr:`CExport.kernels` and the README
list each layer's kernel and the density it was chosen by.

Example:
    >>> export = export_c(read_container("model.albsnn").model, "model_c")  # doctest: +SKIP
    >>> export.weight_bytes, export.arena_bytes  # doctest: +SKIP
    (47216, 6768)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from albsnn_compress.errors import ExportError
from albsnn_compress.files.atomic import atomic_write_text, temporary_pattern
from albsnn_compress.files.output_set import OutputSet
from albsnn_compress.formats.c.ops import ConvOp
from albsnn_compress.formats.c.plan import KERNEL_CHOICES, WEIGHT_MODES, Plan, plan_model
from albsnn_compress.formats.c.source import HEADER, KERNELS_C, KERNELS_H, render_files
from albsnn_compress.snn.spec import SpikingNet

__all__ = [
    "CExport",
    "C_FILES",
    "KERNEL_CHOICES",
    "LayerKernel",
    "WEIGHT_MODES",
    "HEADER",
    "build_c_sources",
    "c_output_set",
    "export_c",
]

C_FILES = (HEADER, "albsnn_model.c", KERNELS_H, KERNELS_C, "README.md")
"""The files of an exported folder (besides its ``manifest.json``), in the order they are rendered."""


@dataclass(frozen=True)
class LayerKernel:
    """The kernel a conv or linear layer runs (the README's layer table lists it too).

    Attributes:
        label: the layer(s) it computes, ``conv2 + bn2 + lif2``.
        function: the kernel, ``albsnn_conv_bit_events``.
        density: the fraction of its inputs that were not zero on the calibration images; ``None``
            without calibration images (or over float values, where every kernel is dense).
    """

    label: str
    function: str
    density: float | None


@dataclass(frozen=True)
class CExport:
    """The exported folder's files, the model's memory in bytes and each layer's kernel.

    Attributes:
        files: file name -> text.
        weight_bytes: ``ALBSNN_WEIGHT_BYTES``, the const arrays (flash).
        arena_bytes: ``ALBSNN_ARENA_BYTES``, the one static RAM buffer.
        kernels: each conv or linear layer's kernel, in order.
    """

    files: dict[str, str]
    weight_bytes: int
    arena_bytes: int
    kernels: tuple[LayerKernel, ...] = ()


def layer_kernels(plan: Plan) -> tuple[LayerKernel, ...]:
    """The kernel of each conv or linear layer of ``plan``, with the input density it was chosen by."""
    return tuple(LayerKernel(op.label, op.function, op.density) for op in plan.ops if isinstance(op, ConvOp))


def build_c_sources(
    model: SpikingNet, *, weights: str = "packed", calibration: torch.Tensor | None = None, kernels: str = "auto"
) -> CExport:
    """The C files of ``model`` in inference mode (batch-norm running statistics), in memory.

    Args:
        model: the network; binarized layers are found with ``is_binarized``.
        weights: ``"packed"`` (1 bit per binarized weight, k bits per weight of a k-bit layer, integer kernels)
            or ``"float"``.
        calibration: images to measure each layer's input density on (a few hundred training images);
            ``None``: spike maps are taken as sparse. See :func:`~albsnn_compress.formats.c.plan.plan_model`.
        kernels: :data:`~albsnn_compress.formats.c.plan.KERNEL_CHOICES`: ``"auto"`` (event-driven where the
            measured density is low enough, else dense), ``"dense"`` or ``"events"``.

    Raises:
        ExportError: an unknown weights mode or kernel choice, or a layer the C export cannot express (named).
    """
    plan = plan_model(model, weights=weights, calibration=calibration, kernels=kernels)
    return CExport(render_files(model, plan, weights), plan.weight_bytes, plan.arena_bytes, layer_kernels(plan))


def c_output_set(folder: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> OutputSet:
    """The exported folder as one :class:`OutputSet`: :data:`C_FILES` and ``manifest.json``.

    ``OutputSet.prepare()`` on it checks, before any work, that the folder can be written
    and that no name is one of ``inputs``, a symbolic link, a folder or a special file.
    """
    return OutputSet(Path(folder), C_FILES, inputs=tuple(Path(item) for item in inputs))


def _remove_old_sibling_staging(folder: Path) -> None:
    """Remove the ``.NAME.XXXXXXXX.tmp/`` sibling folders a killed export of an earlier version left.

    Only folders (not links) of exactly that name holding nothing but our file names and
    their temporaries are removed.
    """
    ours = [temporary_pattern(name) for name in C_FILES]
    sibling = temporary_pattern(folder.name)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder.parent):
            if not (sibling.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)):
                continue
            with contextlib.suppress(OSError):
                names = os.listdir(entry.path)
                if all(name in C_FILES or any(p.fullmatch(name) for p in ours) for name in names):
                    shutil.rmtree(entry.path)


def export_c(
    model: SpikingNet,
    folder: str | os.PathLike[str],
    *,
    weights: str = "packed",
    inputs: Iterable[str | os.PathLike[str]] = (),
    calibration: torch.Tensor | None = None,
    kernels: str = "auto",
) -> CExport:
    """Write ``model``'s C files into ``folder``; see :func:`build_c_sources`. The same model gives the same bytes.

    The files land as one complete set with a ``manifest.json`` written last (see the
    module docstring); other files in an existing folder are left alone. Nothing is
    created when the model is refused.

    Args:
        model: the network.
        folder: a new folder (its parent must exist) or an existing one.
        weights: as :func:`build_c_sources`.
        inputs: the files the caller read (the container): no exported file may be one of them.
        calibration, kernels: how each layer's kernel is chosen, as :func:`build_c_sources`.

    Raises:
        ExportError: as :func:`build_c_sources`; ``folder`` is a file; its parent does not exist.
        OutputError: the folder cannot be written, or a file name breaks an output rule.
        OutputSetError: the folder holds a ``manifest.json`` that is not ours.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file; the C export writes a folder, pass a new or existing folder")
    if not target.exists() and not target.parent.is_dir():
        raise ExportError(f"folder {target.parent} does not exist; create it first")
    export = build_c_sources(model, weights=weights, calibration=calibration, kernels=kernels)
    outputs = OutputSet(target, tuple(export.files), inputs=tuple(Path(item) for item in inputs))
    outputs.prepare()
    _remove_old_sibling_staging(target)
    with outputs.staging() as stage:
        for name, text in export.files.items():
            atomic_write_text(stage / name, text)
    return export
