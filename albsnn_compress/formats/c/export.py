"""Export a :class:`SpikingNet` as a folder of plain C99 for microcontrollers, its 1-bit weights kept packed.

``albsnn-compress export model.albsnn --format c -o model_c/`` writes::

    model_c/albsnn_model.h     int albsnn_infer(const float *pixels, float *logits); status codes, ALBSNN_* macros
    model_c/albsnn_model.c     const weights (flash), the static arena (RAM), the layer sequence
    model_c/albsnn_kernels.c   the kernels (+ albsnn_kernels.h), the same for every model
    model_c/README.md          how to build it for a host and for a Cortex-M

``albsnn_infer`` returns ``ALBSNN_OK`` (0) or a negative ``ALBSNN_ERR_*`` status (a
``NULL`` pointer, or a kernel that refused its arguments); the headers are usable
from C++ (``extern "C"``).

How it computes (``docs/deploy.md`` writes the arithmetic out): a binarized
conv/linear layer reads its sign bits as the container stores them and, over
spikes (bit maps in RAM), sums ``alpha * (2 popcount(bits & spikes) -
popcount(spikes))`` with integer adds only; the first layer and float layers run
in float32; batch norm folds into a per-channel scale and bias; neurons run inside
the layer that feeds them. The layers are dispatched on the layer-type registry
(:data:`~albsnn_compress.formats.c.plan.C_EMITTERS`); anything else is refused,
named. ``weights="float"`` stores every weight as float32 and runs the float
kernels (the same code otherwise), the baseline the benchmark compares against.

Example:
    >>> export = export_c(read_container("model.albsnn").model, "model_c")  # doctest: +SKIP
    >>> export.weight_bytes, export.arena_bytes  # doctest: +SKIP
    (47216, 6768)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from albsnn_compress.errors import ExportError
from albsnn_compress.files.atomic import atomic_write_text, current_umask, fsync_directory
from albsnn_compress.formats.c.plan import WEIGHT_MODES, plan_model
from albsnn_compress.formats.c.source import HEADER, render_files
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["CExport", "WEIGHT_MODES", "HEADER", "build_c_sources", "export_c"]


@dataclass(frozen=True)
class CExport:
    """The exported folder's files and the model's memory in bytes.

    Attributes:
        files: file name -> text.
        weight_bytes: ``ALBSNN_WEIGHT_BYTES``, the const arrays (flash).
        arena_bytes: ``ALBSNN_ARENA_BYTES``, the one static RAM buffer.
    """

    files: dict[str, str]
    weight_bytes: int
    arena_bytes: int


def build_c_sources(model: SpikingNet, *, weights: str = "packed") -> CExport:
    """The C files of ``model`` in inference mode (batch-norm running statistics), in memory.

    Args:
        model: the network; binarized layers are found with ``is_binarized``.
        weights: ``"packed"`` (1 bit per binarized weight, AND + popcount kernels) or ``"float"``.

    Raises:
        ExportError: an unknown weights mode, or a layer the C export cannot express (named).
    """
    plan = plan_model(model, weights=weights)
    return CExport(render_files(model, plan, weights), plan.weight_bytes, plan.arena_bytes)


def _write_new_folder(folder: Path, files: dict[str, str]) -> None:
    """Write the files into a temporary sibling, then rename it into place: all files or none."""
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; give the usual folder mode
        for name, text in files.items():
            atomic_write_text(staging / name, text)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(folder.parent)


def export_c(model: SpikingNet, folder: str | os.PathLike[str], *, weights: str = "packed") -> CExport:
    """Write ``model``'s C files into ``folder``; see :func:`build_c_sources`. The same model gives the same bytes.

    A new folder appears complete or not at all; in an existing folder each file is
    replaced atomically (other files there are left alone).

    Raises:
        ExportError: as :func:`build_c_sources`; ``folder`` is a file; its parent does not exist.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file; the C export writes a folder, pass a new or existing folder")
    if not target.exists() and not target.parent.is_dir():
        raise ExportError(f"folder {target.parent} does not exist; create it first")
    export = build_c_sources(model, weights=weights)
    if target.is_dir():
        for name, text in export.files.items():
            atomic_write_text(target / name, text)
    else:
        _write_new_folder(target, export.files)
    return export
