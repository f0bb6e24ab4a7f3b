"""Train a spiking network from scratch: the library behind ``albsnn-compress train``.

Data flow: dataset registry -> architecture preset or JSON spec -> ``Trainer``
(epoch by epoch, validation accuracy after each) -> test accuracy -> checkpoint.

Reproducible to the byte: the same request (seed included) on the same machine,
software, device and torch thread count writes a byte-identical ``model.pt`` on CPU
(another thread count sums in another order, so the weights differ in the last
bits), and compressing it again gives a byte-identical container (its
``source_sha256`` is the checkpoint's).
The checkpoint therefore holds nothing that varies between runs: the wall time is
in :attr:`TrainResult.seconds` and the command's summary line, not in the file
(torch 2.13's ``serialization_id`` is derived from the archive's content, so it
repeats with it: tests/test_training.py checks the bytes). CUDA kernels may not be deterministic, so on a GPU
only the settings, not the bytes, are promised.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.registry import VAL_FRACTION, check_val_share, dataset_info, load_splits
from albsnn_compress.errors import DatasetError, SpecError
from albsnn_compress.files.output_paths import check_output_file, writing
from albsnn_compress.progress import ProgressCallback, ProgressEvent
from albsnn_compress.snn.presets import PRESETS, make_preset
from albsnn_compress.snn.spec import SpikingNet, accepts_input_shape, normalize_spec
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.trainer import TrainConfig, Trainer, check_batch_size, evaluate
from albsnn_compress.versions import package_versions

__all__ = ["TrainRequest", "TrainResult", "train_model", "resolve_architecture"]


@dataclass
class TrainRequest:
    """Everything ``train`` needs; mirrors the command's options."""

    dataset: str = "digits"
    data_root: str | None = None
    arch: str = "digits-small"
    timesteps: int = 1
    config: TrainConfig = field(default_factory=TrainConfig)
    output: Path | None = None
    splits: dict[str, ImageSet] | None = None  # train/val/test already loaded (e.g. a subset); else read from data_root
    val_share: float | None = None  # fraction of the training split held out (None: 10 %); recorded for compress


@dataclass
class TrainResult:
    """The trained model and its measured accuracies (percent)."""

    model: SpikingNet
    val_accuracy: float
    test_accuracy: float
    history: list[dict[str, float]]
    seconds: float  # wall time of the whole call; not written to the checkpoint (it would change its bytes)
    metadata: dict[str, Any]


def resolve_architecture(arch: str, dataset: str) -> dict[str, Any]:
    """A preset name, or a path to a JSON spec file, as a normalized spec for ``dataset``."""
    info = dataset_info(dataset)
    if arch in PRESETS:
        return make_preset(arch, list(info.input_shape), info.num_classes, list(info.mean), list(info.std))
    path = Path(arch)
    if not path.is_file():
        raise SpecError(f"architecture {arch!r} is neither a preset {list(PRESETS)} nor a JSON spec file")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: not a readable JSON spec ({exc})") from exc
    spec = normalize_spec(spec)
    if not accepts_input_shape(spec, info.input_shape) or spec["num_classes"] != info.num_classes:
        raise SpecError(
            f"{path}: spec is for input {spec['input']['shape']} with {spec['num_classes']} classes, "
            f"dataset {dataset} has {list(info.input_shape)} with {info.num_classes}"
        )
    return spec


def train_model(
    request: TrainRequest, ctx: DistContext = LOCAL, on_progress: ProgressCallback | None = None
) -> TrainResult:
    """Train, evaluate on validation and test splits, and (rank 0) write the checkpoint.

    Args:
        request: dataset, architecture, hyper-parameters and where to write.
        ctx: distributed context (single process by default).
        on_progress: called with ``"train"`` events (schedule steps, loss and validation
            accuracy after each epoch) and each epoch's ``"slice"`` events.

    Raises:
        OutputError: ``request.output`` cannot be written (checked before any work).
        SpecError, DatasetError: the architecture or the dataset is unusable (a split with no image included).
        AlbsnnError: the batch size is larger than the training split (no batch could be drawn), checked
            before the model is built.
    """
    start = time.perf_counter()
    if request.output is not None and ctx.is_main:
        check_output_file(request.output)  # an unwritable -o is refused now, not after the training
    config = request.config
    spec = resolve_architecture(request.arch, request.dataset)
    val_share = check_val_share(VAL_FRACTION if request.val_share is None else request.val_share)
    splits = request.splits or load_splits(request.dataset, request.data_root, val_share=val_share)
    for split in ("train", "val", "test"):
        if split not in splits or len(splits[split]) == 0:
            found = "is missing" if split not in splits else "holds 0 images"
            raise DatasetError(
                f"the {split} split of {request.dataset} {found}; train needs train, val and test images"
            )
    check_batch_size(config.batch_size, len(splits["train"]), ctx.world_size)  # before the model is built
    torch.manual_seed(config.seed)
    model = SpikingNet(spec, request.timesteps)
    trainer = Trainer(model, splits["train"], config, ctx)
    history = []
    if on_progress is not None:
        on_progress(ProgressEvent("train", "epochs", 0, trainer.total_steps))
    epoch = 0
    while trainer.remaining:
        loss = trainer.run(min(trainer.steps_per_epoch, trainer.remaining), on_progress, f"epoch {epoch + 1}")
        val = evaluate(model, splits["val"], ctx)
        history.append({"epoch": epoch + 1, "loss": loss, "val_accuracy": val})
        if on_progress is not None:
            status = f"loss {loss:.4f}  val {val:.2f}%"
            on_progress(
                ProgressEvent("train", "epochs", trainer.step, trainer.total_steps, status, not trainer.remaining)
            )
        epoch += 1
    val_accuracy = history[-1]["val_accuracy"]
    test_accuracy = evaluate(model, splits["test"], ctx)
    seconds = time.perf_counter() - start
    info = dataset_info(request.dataset)
    metadata = {
        "dataset": request.dataset,
        "class_names": list(info.class_names),
        "seed": config.seed,
        "val_share": val_share,
        "accuracy": {"val": val_accuracy, "test": test_accuracy},
        "train_config": asdict(config),
        "history": history,
        "world_size": ctx.world_size,
        "versions": package_versions(),
    }
    model.to("cpu")
    if request.output is not None and ctx.is_main:
        with writing(request.output):
            save_checkpoint(request.output, model, metadata)
    ctx.barrier()
    return TrainResult(model.eval(), val_accuracy, test_accuracy, history, seconds, metadata)
