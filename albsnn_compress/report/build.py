"""Build the report document from a :class:`CompressionResult` and the files a run wrote.

Three sources, kept apart in the document:

* the result itself (accuracies, budget, decisions, trajectory, timings);
* the *computed* storage: :func:`albsnn_compress.storage.layer_storage` of the
  compressed model, ``numel * bits`` per stored tensor (scales, biases and
  batch-norm tensors included), bytes = bits / 8 with no container overhead;
* the *measured* bytes on disk of the input checkpoint, the ``.albsnn``
  container and the ONNX file (``os.stat``; ``null`` where a file is absent),
  and of the NIR file when the run wrote one (``storage.on_disk.nir``, with
  ``storage.nir`` saying which layers it holds as binary up to a scale);
* what each model costs to run, when the caller measured it (``operations``: synaptic
  operations split into AC and MAC, bytes moved and an energy estimate, for the input
  and the compressed model on the same images; :func:`albsnn_compress.operations.operations_section`
  builds it, the pipeline always does).

Units: accuracies in percent, drops and budgets in percentage points, storage
in bits (integers) and bytes (bits / 8, so a 36-bit tensor is 4.5 bytes), times
in seconds.
"""

from __future__ import annotations

import copy
import math
import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from albsnn_compress.errors import ReportError
from albsnn_compress.report.schema import SCHEMA_ID, SCHEMA_VERSION, validate_report
from albsnn_compress.search.paired_drop import INTERVAL_METHOD, REPORTED_CONFIDENCE, PairedDrop
from albsnn_compress.search.result import CompressionResult, LayerDecision, SearchStep
from albsnn_compress.storage import FLOAT_BITS, LayerStorage, layer_storage
from albsnn_compress.versions import package_versions

__all__ = ["build_report", "file_entry", "NIR_NOTE"]

NIR_NOTE = (
    "NIR stores float32 arrays (HDF5): there is no 1-bit packing on disk, so the .nir file holds every weight at "
    "32 bits, like the float model. The binary structure survives as values: every weight of each listed layer is "
    "exactly "
    "+scale[c] or -scale[c] for its output channel c (node metadata albsnn_binary and albsnn_scale), so a "
    "neuromorphic toolchain that quantizes weights can store those layers as 1-bit synapses with one scale per "
    "output channel (or that scale folded into the neurons' input gain) without losing anything."
)

PathLike = str | os.PathLike[str]


def build_report(
    result: CompressionResult,
    *,
    input_checkpoint: PathLike | None = None,
    container: PathLike | None = None,
    onnx: PathLike | None = None,
    versions: Mapping[str, str] | None = None,
    nir: PathLike | None = None,
    nir_binary_layers: Sequence[str] = (),
    c_export: Mapping[str, Any] | None = None,
    operations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document (schema :data:`~albsnn_compress.report.schema.SCHEMA`) of one run.

    Args:
        result: what the search returned; its ``model`` is measured with
            :func:`~albsnn_compress.storage.layer_storage` for ``result.binarized``.
        input_checkpoint: the ``model.pt`` the run started from.
        container: the ``.albsnn`` file the run wrote.
        onnx: the ``.onnx`` file the run wrote.
        versions: package versions to record; default
            :func:`~albsnn_compress.versions.package_versions`.
        nir: the ``.nir`` file the run wrote, if any (adds ``storage.on_disk.nir`` and ``storage.nir``).
        nir_binary_layers: the layers that file holds as binary up to a per-channel scale
            (``NirExport.binary_layers``).
        c_export: the model's C export memory, ``{"flash_bytes", "ram_bytes", "refused"}``
            (adds ``storage.c_export``; the pipeline computes it with ``plan_model``).
        operations: the ``operations`` section, both models' operations on the same images
            (:func:`albsnn_compress.operations.operations_section`; the pipeline always adds it).

    Returns:
        A JSON-able dict that passes :func:`~albsnn_compress.report.schema.validate_report`.

    Raises:
        ReportError: if the result names a binarized layer the model lacks, holds
            a non-finite accuracy, budget or time, or ``operations`` does not match the schema
            or does not add up.
    """
    rows = layer_storage(result.model, result.binarized)
    _check_binarized(result.binarized, rows)
    decisions = {d.name: d for d in result.decisions}
    layers = [_layer(row, decisions.get(row.name), row.name in set(result.candidates)) for row in rows]
    bits_before = sum(layer["bits_before"] for layer in layers)
    bits_after = sum(layer["bits_after"] for layer in layers)
    files = {
        "input_checkpoint": file_entry(input_checkpoint),
        "container": file_entry(container),
        "onnx": file_entry(onnx),
        **({"nir": file_entry(nir)} if nir is not None else {}),
    }
    report = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "model": _model_info(result),
        "search": {
            "strategy": str(result.strategy),
            "estimator": str(result.estimator),
            "seed": int(result.seed),
            "budget_points": _finite(result.budget, "budget"),
            "finetune_epochs": _finite(result.finetune_epochs, "finetune_epochs"),
            "candidates": list(result.candidates),
            "binarized": list(result.binarized),
            "config": dict(result.config),
        },
        "accuracy": _accuracy(result),
        "storage": {
            "computed": {
                "params": sum(layer["params"] for layer in layers),
                "bits_before": bits_before,
                "bits_after": bits_after,
                "bytes_before": _bytes(bits_before),
                "bytes_after": _bytes(bits_after),
                "ratio": _ratio(bits_before, bits_after),
                "saved_percent": 100.0 * (bits_before - bits_after) / bits_before if bits_before else None,
                "binarized_layers": sum(layer["binarized"] for layer in layers),
                "binarized_weight_params": sum(layer["weight_params"] for layer in layers if layer["binarized"]),
            },
            "on_disk": files,
            "on_disk_ratio": {
                key: _ratio(files["input_checkpoint"]["bytes"], files[key]["bytes"])
                for key in files
                if key != "input_checkpoint"
            },
            **(
                {
                    "nir": {
                        "binary_scaled_layers": [str(n) for n in nir_binary_layers],
                        "weight_precision": FLOAT_BITS,
                        "note": NIR_NOTE,
                    }
                }
                if nir is not None
                else {}
            ),
            **({"c_export": dict(c_export)} if c_export is not None else {}),
        },
        "layers": layers,
        "trajectory": [_step(step, bits_before) for step in result.trajectory],
        "timings": {str(phase): _finite(seconds, f"timings[{phase!r}]") for phase, seconds in result.timings.items()},
        "versions": {str(k): str(v) for k, v in (versions if versions is not None else package_versions()).items()},
        **({"operations": copy.deepcopy(dict(operations))} if operations is not None else {}),
    }
    validate_report(report)
    return report


def file_entry(path: PathLike | None) -> dict[str, Any]:
    """``{"path", "bytes"}`` of a file on disk; ``bytes`` is ``None`` when it is not a regular file."""
    if path is None:
        return {"path": None, "bytes": None}
    try:
        info = os.stat(path)
    except OSError:
        return {"path": str(path), "bytes": None}
    return {"path": str(path), "bytes": info.st_size if stat.S_ISREG(info.st_mode) else None}


def _check_binarized(names: list[str], rows: list[LayerStorage]) -> None:
    binarized = {row.name for row in rows if row.binarized}
    missing = [name for name in names if name not in binarized]
    if missing:
        raise ReportError(
            f"result.binarized names {missing}, which the model has no binarizable layer for; "
            f"binarizable layers: {[row.name for row in rows if row.binarizable]}"
        )


def _model_info(result: CompressionResult) -> dict[str, Any]:
    spec = getattr(result.model, "spec", None)
    spec = spec if isinstance(spec, dict) else {}
    timesteps = getattr(result.model, "timesteps", None)
    return {
        "name": str(spec.get("name", type(result.model).__name__)),
        "timesteps": timesteps if type(timesteps) is int else None,
        "input_shape": list(spec.get("input", {}).get("shape", [])),
        "num_classes": spec.get("num_classes") if type(spec.get("num_classes")) is int else None,
    }


def _accuracy(result: CompressionResult) -> dict[str, Any]:
    acc = result.accuracy
    for key in ("val_before", "val_after"):
        if key not in acc:
            raise ReportError(
                f"result.accuracy has no {key!r}; the search must measure validation accuracy before and after"
            )
    val_before = _finite(acc["val_before"], "accuracy['val_before']")
    val_after = _finite(acc["val_after"], "accuracy['val_after']")
    test_before = _finite(acc["test_before"], "accuracy['test_before']") if acc.get("test_before") is not None else None
    test_after = _finite(acc["test_after"], "accuracy['test_after']") if acc.get("test_after") is not None else None
    budget = _finite(result.budget, "budget")
    return {
        "val_before": val_before,
        "val_after": val_after,
        "test_before": test_before,
        "test_after": test_after,
        "val_drop_points": val_before - val_after,
        "test_drop_points": test_before - test_after if test_before is not None and test_after is not None else None,
        "val_floor": val_before - budget,
        "within_budget": val_before - val_after <= budget,
        **({"paired": _paired_splits(result)} if result.paired else {}),
    }


def _paired_splits(result: CompressionResult) -> dict[str, Any]:
    """Each split's paired drop, and the float control's on validation when the run measured one."""
    confidence = result.config.get("confidence")
    splits = {split: _paired(drop, confidence) for split, drop in result.paired.items()}
    if result.control is not None:
        splits["control"] = _paired(result.control, confidence)
    return splits


def _paired(drop: PairedDrop, confidence: float | None) -> dict[str, Any]:
    """A split's paired drop: lost and gained images, the drop's 95 % interval, and the bound decisions used."""
    low, high = drop.interval(REPORTED_CONFIDENCE)
    return {
        "images": drop.images,
        "lost": drop.lost,
        "gained": drop.gained,
        "resolution_points": drop.resolution_points,
        "drop_points": drop.points,
        "interval_confidence": REPORTED_CONFIDENCE,
        "interval_points": [low, high],
        "decision_confidence": confidence,
        "upper_bound_points": drop.upper_bound(confidence) if confidence is not None else None,
        "method": INTERVAL_METHOD,
    }


def _tensors(row: LayerStorage) -> list[dict[str, Any]]:
    """Per-tensor bits before and after; a binarized (k-bit) weight goes 32 -> 1 (k) and gains a float scale."""
    tensors = []
    reduced = row.weight_bits != FLOAT_BITS
    for name, bits_after in row.parts_after.items():
        if reduced and name == "weight":
            elements, before, after = bits_after // row.weight_bits, FLOAT_BITS, row.weight_bits
        elif reduced and name == "weight_scale":
            elements, before, after = bits_after // FLOAT_BITS, None, FLOAT_BITS
        else:
            elements, before, after = bits_after // FLOAT_BITS, FLOAT_BITS, FLOAT_BITS
        tensors.append(
            {
                "name": name,
                "elements": elements,
                "precision_before": before,
                "precision_after": after,
                "bits_before": elements * before if before is not None else 0,
                "bits_after": bits_after,
            }
        )
    return tensors


def _layer(row: LayerStorage, decision: LayerDecision | None, candidate: bool) -> dict[str, Any]:
    tensors = _tensors(row)
    weight = next((t for t in tensors if t["name"] == "weight"), None)
    return {
        "name": row.name,
        "type": row.kind,
        "weight_shape": [int(d) for d in row.weight_shape],
        "weight_params": weight["elements"] if weight else 0,
        "params": row.params,
        "candidate": candidate,
        "binarized": row.binarized,
        "precision_before": FLOAT_BITS,
        "precision_after": row.weight_bits,
        "bits_before": row.bits_before,
        "bits_after": row.bits_after,
        "bytes_before": _bytes(row.bits_before),
        "bytes_after": _bytes(row.bits_after),
        "saved_bits": row.bits_before - row.bits_after,
        "tensors": tensors,
        "estimate_raw": _optional(decision.estimate_raw) if decision else None,
        "estimate_points": _optional(decision.estimate_points) if decision else None,
        "measured_alone_points": _optional(decision.measured_alone_points) if decision else None,
        "measured_increment_points": _optional(decision.measured_increment_points) if decision else None,
        "reason": _reason(row, decision, candidate),
    }


def _reason(row: LayerStorage, decision: LayerDecision | None, candidate: bool) -> str:
    if decision is not None:
        return decision.reason
    if not row.binarizable:
        return f"not binarizable ({row.kind})"
    if row.binarized:
        return "binarized without a search decision"
    return "candidate without a search decision" if candidate else "not a search candidate"


def _step(step: SearchStep, bits_before: int) -> dict[str, Any]:
    return {
        "index": int(step.index),
        "action": str(step.action),
        "layers": list(step.layers),
        "binarized": list(step.binarized),
        "val_accuracy": _finite(step.val_accuracy, f"trajectory[{step.index}].val_accuracy"),
        "drop_points": _finite(step.drop_points, f"trajectory[{step.index}].drop_points"),
        "storage_bits": int(step.storage_bits),
        "storage_bytes": _bytes(int(step.storage_bits)),
        "ratio": _ratio(bits_before, int(step.storage_bits)),
        "estimates_points": {str(k): _optional(v) for k, v in step.estimates_points.items()},
        "estimates_raw": {str(k): _optional(v) for k, v in step.estimates_raw.items()},
        "seconds": _finite(step.seconds, f"trajectory[{step.index}].seconds"),
        **(_step_paired(step.paired) if step.paired is not None else {}),
    }


def _step_paired(drop: PairedDrop) -> dict[str, Any]:
    """A step's images lost and gained against the input model, and its drop's 95 % interval."""
    return {"lost": drop.lost, "gained": drop.gained, "interval_points": list(drop.interval(REPORTED_CONFIDENCE))}


def _bytes(bits: int) -> int | float:
    """Bits / 8: an int when whole, else the exact fraction as a float (a multiple of 1/8)."""
    return bits // 8 if bits % 8 == 0 else bits / 8


def _ratio(before: int | None, after: int | None) -> float | None:
    if before is None or not after:
        return None
    return before / after


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ReportError(f"result {what} is {number}; a report needs finite numbers")
    return number


def _optional(value: Any) -> float | None:
    """A finite float, or ``None`` for a missing or non-finite estimator figure."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
