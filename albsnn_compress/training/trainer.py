"""Training and evaluation loops, one process or many (DDP), reporting progress as events.

``Trainer`` owns the optimizer (AdamW), a cosine learning-rate schedule over a
known number of steps, and the DDP wrapper; callers run it in slices
(``trainer.run(steps)``), which is what lets the search interleave finetuning
with binarization decisions. ``evaluate`` all-reduces correct/total counts, so
accuracy is over the whole split whatever the number of processes.

Learning-rate rule under DDP: ``batch_size`` is the *global* batch; each of the
N processes takes ``batch_size / N``. The same global batch keeps the same
learning rate; if you grow the global batch, scale ``lr`` linearly with it.

Training drops the last incomplete batch, so a batch size larger than the training
split would yield no batch at all and the schedule would never advance: such a batch
size is refused (:func:`check_batch_size`) before any step, naming the split's size and
the largest batch size that works. It is refused rather than lowered because the batch
size sets the learning-rate scale and the results of a seeded run: a run never trains
with a batch size it was not given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.progress import ProgressCallback, ProgressEvent
from albsnn_compress.seeds import MAX_DERIVED_SEED, check_seed
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.outcomes import accuracy_percent, correct_answers
from albsnn_compress.training.sync_batchnorm import synchronized_batchnorm

__all__ = ["TrainConfig", "Trainer", "evaluate", "cross_entropy_loss", "LossFn", "check_batch_size"]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training or finetuning run.

    Attributes:
        epochs: passes over the training split (may be fractional).
        batch_size: global batch size (split across processes under DDP).
        lr: peak learning rate of the cosine schedule (AdamW).
        weight_decay: decoupled weight decay (AdamW).
        seed: fixes initialisation, shuffling and augmentation; an integer from 0 to
            :data:`~albsnn_compress.seeds.MAX_SEED` (2^32 - 1) as a user sets it, checked
            whenever it is set (up to :data:`~albsnn_compress.seeds.MAX_DERIVED_SEED`, so
            the seeds a search derives per finetuning slice fit too).
        augment: random crop + flip (the dataset's default when ``None``).
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        sync_bn: under DDP, batch-norm statistics over the global batch
            (:mod:`albsnn_compress.training.sync_batchnorm`) instead of each process's shard.
        compile: run the training steps through ``torch.compile`` (opt-in). On CPU it
            costs tens of seconds of compilation, then makes fmnist-vgg steps about a
            quarter faster (``benchmarks/bench_training.py``); worth it for runs of
            more than a few hundred steps. Compiled kernels may round differently
            from eager ones, so spikes at exact threshold ties, and hence the
            trained bytes, can differ from an eager run with the same seed.
        channels_last: run the training steps with 4-D weights and images in
            ``torch.channels_last`` (opt-in): on CPU fmnist-vgg steps are about a fifth
            faster at every T (``benchmarks/bench_training.py``). The model is back in
            the standard layout after every :meth:`Trainer.run`, so what is saved or
            exported is unchanged; the convolutions round differently, so the trained
            bytes differ from a run without it.
    """

    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.0
    seed: int = 0
    augment: bool | None = None
    amp: bool = False
    sync_bn: bool = False
    compile: bool = False
    channels_last: bool = False

    def __setattr__(self, name: str, value: object) -> None:
        # every assignment, the dataclass __init__'s included (torch.manual_seed overflows past 2^64)
        if name == "seed":
            value = check_seed(value, "TrainConfig.seed", MAX_DERIVED_SEED)
        super().__setattr__(name, value)


def _to_memory_format(module: nn.Module, memory_format: torch.memory_format) -> None:
    """``module.to(memory_format=...)``: its 4-D and 5-D parameters and buffers take that layout, in place."""
    # Module.to takes memory_format at run time (it parses its arguments as Tensor.to does); torch's overloads omit it
    module.to(memory_format=memory_format)  # type: ignore[call-overload]


def cross_entropy_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the time-mean output (the default training loss)."""
    return F.cross_entropy(model(images), labels)


def check_batch_size(
    batch_size: object,
    images: int,
    world_size: int = 1,
    split: str = "training split",
    error: type[AlbsnnError] = AlbsnnError,
) -> int:
    """``batch_size`` if training over ``images`` images on ``world_size`` processes draws at least one full batch.

    Each process draws ``batch_size / world_size`` images per step from its ``images // world_size``
    (:class:`~torch.utils.data.DistributedSampler` with ``drop_last``), and the last incomplete batch is
    dropped; a batch size above that would make every epoch empty and training loop forever.

    Raises:
        AlbsnnError: (``error``) not a positive integer, not divisible by ``world_size``, or larger
            than the split allows; the message names the split's size and the fix.
    """
    if type(batch_size) is not int or batch_size < 1:
        raise error(f"batch size must be an integer >= 1, got {batch_size!r}")
    if batch_size % world_size:
        raise error(f"batch size {batch_size} is not divisible by {world_size} processes; pick a multiple")
    largest = images // world_size * world_size
    if batch_size > largest:
        processes = f" shared by {world_size} processes" if world_size > 1 else ""
        if largest == 0:
            raise error(
                f"the {split} holds {images} images{processes}: too few for even one batch; use more images"
                + (" or fewer processes" if world_size > 1 else "")
            )
        raise error(
            f"batch size {batch_size} is larger than the {images} images of the {split}{processes}, so no "
            f"batch could be drawn; pass a batch size of at most {largest} (--batch-size {largest}) or use more images"
        )
    return batch_size


class Trainer:
    """Run optimisation steps on ``model`` over ``train_set``, in slices.

    Args:
        model: the network (moved to ``ctx.device``; trained in place).
        train_set: the training split.
        config: hyper-parameters; ``config.epochs`` sets the schedule length.
        ctx: distributed context (single process by default).
        loss_fn: ``loss_fn(model, images, labels)``; cross-entropy by default.
        after_backward: called with the model after each backward pass, before the
            optimizer step (the loss estimator gathers gradient statistics there).
        param_groups: AdamW parameter groups (``{"params": [...], "lr": ..., "weight_decay": ...}``),
            for parameters that learn at their own rate (the latent weights of binarized layers);
            default: every trainable parameter at ``config.lr`` and ``config.weight_decay``. The
            cosine schedule scales every group's rate alike.

    Raises:
        AlbsnnError: the batch size yields no batch of ``train_set`` (:func:`check_batch_size`).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: ImageSet,
        config: TrainConfig,
        ctx: DistContext = LOCAL,
        loss_fn: LossFn = cross_entropy_loss,
        after_backward: Callable[[nn.Module], None] | None = None,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        check_batch_size(config.batch_size, len(train_set), ctx.world_size)  # before anything is built
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.config = config
        self.loss_fn = loss_fn
        self.after_backward = after_backward
        augment = config.augment if config.augment is not None else bool(train_set.info and train_set.info.augment)
        self.loader = BatchLoader(
            train_set,
            config.batch_size // ctx.world_size,
            shuffle=True,
            augment=augment,
            seed=config.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            drop_last=True,
        )
        self.steps_per_epoch = max(1, len(self.loader))
        self.total_steps = max(1, math.ceil(config.epochs * self.steps_per_epoch))
        self.step = 0
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = param_groups if param_groups is not None else [{"params": trainable}]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        )
        self.wrapped: nn.Module = model
        self._memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        _to_memory_format(self.model, self._memory_format)  # DDP lays out its gradient buckets like the weights
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(model, device_ids=device_ids)
        if config.compile:  # the steps only: evaluation and the saved model stay the eager module
            # compiling a Module gives an OptimizedModule (a Module wrapping it); torch's overloads say Callable
            self.wrapped = cast(nn.Module, torch.compile(self.wrapped))
        _to_memory_format(self.model, torch.contiguous_format)  # between runs: the standard layout
        self._batches = self._batch_stream()

    def _batch_stream(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's batches, epoch after epoch, without end (an epoch without a batch is an error, not a loop)."""
        epoch = 0
        while True:
            self.loader.set_epoch(epoch)
            drawn = 0
            for batch in self.loader:
                drawn += 1
                yield batch
            if not drawn:  # check_batch_size rules this out; never spin on empty epochs whatever changed since
                raise AlbsnnError(
                    f"epoch {epoch + 1} drew no batch of {self.loader.batch_size} from {len(self.loader.data)} images"
                )
            epoch += 1

    @property
    def remaining(self) -> int:
        """Steps left in the schedule."""
        return self.total_steps - self.step

    def run(self, steps: int, on_progress: ProgressCallback | None = None, description: str = "train") -> float:
        """Take ``steps`` optimisation steps (capped at the schedule end); return the mean loss.

        Args:
            steps: optimisation steps to take.
            on_progress: called with a ``"slice"`` :class:`ProgressEvent` before the first
                step and after each (the running mean loss as its status).
            description: the events' description (``"epoch 2"``, ``"try conv3"``).
        """
        steps = min(steps, self.remaining)
        if on_progress is not None:
            on_progress(ProgressEvent("slice", description, 0, steps, finished=steps == 0))
        self.model.train()
        total = 0.0
        use_amp = self.config.amp and self.ctx.device.type == "cuda"
        _to_memory_format(self.model, self._memory_format)
        with synchronized_batchnorm(self.model, enabled=self.config.sync_bn and self.ctx.distributed):
            for i in range(steps):
                images, labels = next(self._batches)
                images, labels = (
                    images.to(self.ctx.device, non_blocking=True),
                    labels.to(self.ctx.device, non_blocking=True),
                )
                images = images.contiguous(memory_format=self._memory_format)
                with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = self.loss_fn(self.wrapped, images, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                if self.after_backward is not None:
                    self.after_backward(self.model)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                total += float(loss.detach())
                if on_progress is not None:
                    on_progress(
                        ProgressEvent("slice", description, i + 1, steps, f"loss {total / (i + 1):.4f}", i + 1 == steps)
                    )
        _to_memory_format(self.model, torch.contiguous_format)
        self.ctx.broadcast_buffers_(self.model)  # every rank now holds the model rank 0 saves
        total = float(self.ctx.all_reduce_sum(torch.tensor(total, dtype=torch.float64))) / self.ctx.world_size
        return total / max(steps, 1)


def evaluate(model: nn.Module, data: ImageSet, ctx: DistContext = LOCAL, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent over the whole split.

    Every rank answers its shard (see :mod:`albsnn_compress.training.outcomes`).
    """
    return accuracy_percent(correct_answers(model, data, ctx, batch_size))
