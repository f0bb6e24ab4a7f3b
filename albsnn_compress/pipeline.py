"""The whole ``compress`` run on a checkpoint: load -> search -> pack -> report.

This is the one place where the stages meet (the command line calls it, tests
call it too): check that the output folder can be written and that no file of the
set would replace the input, follow a symbolic link or replace a non-regular file
(before any work), read and validate the checkpoint, load the dataset splits named
in its metadata, run :func:`~albsnn_compress.search.run.compress`, then (main process only) count what
the input and the compressed model cost to run on the same images (at most
:data:`~albsnn_compress.operations.MAX_IMAGES` of the test split:
:func:`~albsnn_compress.operations.count_operations`) and write the
``.albsnn`` container, the ONNX file (and, on request, a NIR file) and the report as one set
(:class:`~albsnn_compress.files.output_set.OutputSet`: staged, renamed into place
together, ``manifest.json`` last), so an interrupted run leaves the previous
complete set, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.registry import dataset_info, load_splits, recorded_val_share
from albsnn_compress.errors import CheckpointError, CompressionError, DatasetError, ExportError
from albsnn_compress.files.output_paths import writing
from albsnn_compress.files.output_set import MANIFEST_NAME, OutputSet
from albsnn_compress.formats.c.plan import plan_model
from albsnn_compress.formats.container.file import sha256_file, write_container
from albsnn_compress.formats.nir.optional import check_nir_exportable, export_nir, is_nir_file, read_nir
from albsnn_compress.formats.onnx.export import export_onnx
from albsnn_compress.operations import MAX_IMAGES, check_countable, count_operations, operations_section
from albsnn_compress.progress import ProgressCallback
from albsnn_compress.report import build_report, write_report
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.result import CompressionResult
from albsnn_compress.snn.spec import SpikingNet, accepts_input_shape
from albsnn_compress.training.distributed import LOCAL, DistContext

__all__ = [
    "CompressRequest",
    "CompressOutcome",
    "compress_checkpoint",
    "c_footprint",
    "cost_of",
    "OUTPUT_FORMATS",
    "OPERATIONS_SPLIT",
]

OUTPUT_FORMATS = ("albsnn", "onnx", "nir")
"""What a run can write besides its report: the container and ONNX (always), NIR (on request)."""


@dataclass
class CompressRequest:
    """What ``albsnn-compress model.pt --budget B`` asks for."""

    checkpoint: Path
    budget: float
    config: SearchConfig = field(default_factory=SearchConfig)
    outdir: Path | None = None
    data_root: Path | None = None
    onnx_weights: str = "packed"
    formats: tuple[str, ...] = ("albsnn", "onnx")
    dataset: str | None = None
    timesteps: int | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in OUTPUT_FORMATS]
        if unknown:
            raise CompressionError(f"unknown output formats {unknown}; choose among {list(OUTPUT_FORMATS)}")
        wanted = {"albsnn", "onnx", *self.formats}  # the container and ONNX are always written
        self.formats = tuple(f for f in OUTPUT_FORMATS if f in wanted)


@dataclass
class CompressOutcome:
    """The search result, the files written and the report (empty on non-main ranks)."""

    result: CompressionResult
    files: dict[str, Path]
    report: dict[str, Any] | None


def compress_checkpoint(
    request: CompressRequest, ctx: DistContext = LOCAL, on_progress: ProgressCallback | None = None
) -> CompressOutcome:
    """Run the whole pipeline; see the module docstring.

    Args:
        request: the checkpoint, budget, search settings and output folder.
        ctx: distributed context (single process by default).
        on_progress: receives the search's and its finetuning's progress events.
    """
    outputs = _output_set(request, request.outdir) if ctx.is_main and request.outdir is not None else None
    if outputs is not None:
        outputs.prepare()  # a folder that cannot be written is refused now, not after the search
    model, metadata = _input_model(request)
    dataset = metadata["dataset"]
    val_share = _recorded_val_share(metadata, request.checkpoint)
    try:
        splits = load_splits(dataset, request.data_root, val_share=val_share)
    except DatasetError as exc:
        raise DatasetError(f"{exc} (the model was trained on {dataset})") from exc
    if "nir" in request.formats:
        check_nir_exportable(model)  # a layer NIR cannot hold is refused now, not after the search
    check_countable(model)  # so is a weighted layer type the report cannot count the operations of
    result = compress(
        model,
        splits["train"],
        splits["val"],
        request.budget,
        test_data=splits["test"],
        config=request.config,
        ctx=ctx,
        on_progress=on_progress,
    )
    files: dict[str, Path] = {}
    report = None
    if outputs is not None:
        operations = cost_of(model, cast(SpikingNet, result.model), splits[OPERATIONS_SPLIT], OPERATIONS_SPLIT)
        files, report = _write_outputs(request, outputs, metadata, result, operations)
    ctx.barrier()
    return CompressOutcome(result, files, report)


REPORT_FORMATS = ("json", "html")
OPERATIONS_SPLIT = "test"
"""The split whose first images the report's operations are measured on (a run always evaluates it)."""


def cost_of(
    input_model: SpikingNet, compressed: SpikingNet, split: ImageSet, split_name: str, limit: int = MAX_IMAGES
) -> dict[str, Any]:
    """The report's ``operations`` section: both models run on the first ``limit`` images of ``split``."""
    images = split.as_float(torch.arange(min(len(split), limit)))
    return operations_section(
        count_operations(input_model, images),
        count_operations(compressed, images),
        split=split_name,
        image_limit=limit,
    )


def c_footprint(model: SpikingNet) -> dict[str, Any]:
    """The model's C export memory: flash (const weights) and RAM (the one arena) bytes, or why it has no C form."""
    try:
        plan = plan_model(model, weights="packed")
    except ExportError as exc:
        return {"flash_bytes": None, "ram_bytes": None, "refused": str(exc)}
    return {"flash_bytes": plan.weight_bytes, "ram_bytes": plan.arena_bytes, "refused": None}


def _recorded_val_share(metadata: dict[str, Any], path: Path) -> float:
    """The validation share the model was trained with (``train --val-share``; 10 % when not recorded).

    ``compress`` must decide on the images training held out, so it reads the share back
    rather than taking one: any other share would hand it images the model trained on.
    """
    try:
        return recorded_val_share(metadata)
    except DatasetError as exc:
        raise CheckpointError(f"{path}: metadata 'val_share' is unusable: {exc}; retrain or fix the file") from exc


def _input_model(request: CompressRequest) -> tuple[SpikingNet, dict[str, Any]]:
    """The model to compress and its metadata (``dataset`` and ``class_names`` at least).

    A checkpoint names its dataset; a NIR file (told by its content) is imported with
    :func:`read_nir`, and ``request.dataset`` says what it was trained on.
    """
    path = request.checkpoint
    if is_nir_file(path):
        if request.dataset is None:
            raise CompressionError(f"{path}: a NIR file names no dataset; pass --dataset (the one it was trained on)")
        info = dataset_info(request.dataset)
        model = read_nir(path, request.timesteps)
        if not accepts_input_shape(model.spec, info.input_shape):
            raise DatasetError(
                f"{path}: the network takes inputs of shape {model.spec['input']['shape']}, {request.dataset} images "
                "are "
                f"{list(info.input_shape)}; pass the dataset it was trained on with --dataset"
            )
        return model, {"dataset": request.dataset, "class_names": list(info.class_names)}
    checkpoint = read_checkpoint(path)
    dataset = request.dataset or checkpoint.metadata.get("dataset")
    if not isinstance(dataset, str):
        raise CheckpointError(
            f"{path}: metadata names no dataset; pass --dataset or retrain with `albsnn-compress train`"
        )
    return checkpoint.build(), {**checkpoint.metadata, "dataset": dataset}


def _output_set(request: CompressRequest, outdir: Path) -> OutputSet:
    """The files a run writes: ``<stem>.albsnn``, ``<stem>.onnx``, ``report.json``, ``report.html`` (then
    ``<stem>.nir`` if asked); none of them may be the input (``report.json`` as the input, or ``d/m.nir
    -o d --formats nir``, is refused before any work)."""
    stem = request.checkpoint.stem
    names = (
        f"{stem}.albsnn",
        f"{stem}.onnx",
        *(f"report.{form}" for form in REPORT_FORMATS),
    )  # write_report's names in a folder
    names += (f"{stem}.nir",) if "nir" in request.formats else ()
    return OutputSet(outdir, names, inputs=(request.checkpoint,))  # no name of the set may replace the input


def _write_outputs(
    request: CompressRequest,
    outputs: OutputSet,
    metadata: dict[str, Any],
    result: CompressionResult,
    operations: dict[str, Any],
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the container, the ONNX file and the JSON + HTML report (with ``operations``) as one set into the
    output folder."""
    container_name, onnx_name, *_ = outputs.names
    model = cast(SpikingNet, result.model)  # compress() refuses a model it could not pack: it is a SpikingNet
    final = outputs.paths
    source_sha256 = sha256_file(request.checkpoint)  # a read: outside the block whose OSErrors are write errors
    with outputs.staging() as stage, writing(outputs.folder):
        container, onnx_path = stage / container_name, stage / onnx_name
        write_container(
            container,
            model,
            class_names=metadata.get("class_names"),
            accuracy=result.accuracy,
            budget=result.budget,
            source_sha256=source_sha256,
            metadata={
                "dataset": str(metadata.get("dataset")),
                "strategy": result.strategy,
                "estimator": result.estimator,
                "seed": str(result.seed),
            },
        )
        export_onnx(model, onnx_path, weights=request.onnx_weights)
        nir_name = outputs.names[-1] if "nir" in request.formats else None
        nir_info = export_nir(model, stage / nir_name) if nir_name else None
        report = build_report(
            result,
            input_checkpoint=request.checkpoint,
            container=container,
            onnx=onnx_path,
            nir=stage / nir_name if nir_name else None,
            nir_binary_layers=nir_info.binary_layers if nir_info else (),
            c_export=c_footprint(model),
            operations=operations,
        )
        # the sizes were measured on the staged files; the paths are where they end up
        report["storage"]["on_disk"]["container"]["path"] = str(final[container_name])
        report["storage"]["on_disk"]["onnx"]["path"] = str(final[onnx_name])
        if nir_name:
            report["storage"]["on_disk"]["nir"]["path"] = str(final[nir_name])
        written = write_report(report, stage, formats=REPORT_FORMATS)
    files = {"container": final[container_name], "onnx": final[onnx_name]}
    if nir_name:
        files["nir"] = final[nir_name]
    files.update({f"report ({form})": final[path.name] for form, path in written.items()})
    files["manifest"] = outputs.folder / MANIFEST_NAME
    return files, report
