"""One process or many: device choice and the torch.distributed context.

Started by ``torchrun`` (which sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``), the
same commands join a process group (NCCL on GPUs, gloo on CPUs) and wrap models
in :class:`~torch.nn.parallel.DistributedDataParallel`. Every collective the
library needs goes through :class:`DistContext`, which degrades to plain local
arithmetic on a single process, so no caller branches on "am I distributed?".
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from albsnn_compress.errors import AlbsnnError

__all__ = ["DistContext", "resolve_device", "init_distributed", "LOCAL"]


def resolve_device(name: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a device; ``auto`` picks CUDA when present.

    ``cuda`` means this process's own GPU, ``cuda:LOCAL_RANK`` (torchrun starts
    one process per GPU); ``cuda:N`` pins the (single) process to GPU N.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: this process's index on its machine (torchrun's ``LOCAL_RANK``).
        local_world_size: processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``).

    Raises:
        AlbsnnError: CUDA was asked for but is not available, the machine has fewer
            GPUs than processes, or several processes were pinned to one GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AlbsnnError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if name == "cuda":
            return _own_gpu(local_rank)
        if local_world_size > 1:
            raise AlbsnnError(
                f"--device {name} puts all {local_world_size} processes of this machine on one GPU; "
                "pass --device cuda (each process takes cuda:LOCAL_RANK)"
            )
        try:
            return torch.device(name)
        except RuntimeError as exc:  # torch.device's parse error for a string such as "cuda:x"
            raise AlbsnnError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if name != "cpu":
        raise AlbsnnError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def _own_gpu(local_rank: int) -> torch.device:
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise AlbsnnError(
            f"process LOCAL_RANK={local_rank} has no GPU of its own: this machine has {count}; "
            f"start at most {count} processes per machine (torchrun --nproc_per_node={count})"
        )
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job, and the collectives the library uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes files, prints reports and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: models are wrapped in DDP and results reduced."""
        return self.world_size > 1

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` over all processes (returned; the input is not modified)."""
        if not self.distributed:
            return values
        reduced = values.detach().clone().to(self.device)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.to(values.device)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (for decisions that must never diverge)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def broadcast_buffers_(self, module: nn.Module) -> None:
        """Overwrite ``module``'s buffers with rank 0's, in place.

        After DDP training each rank's batch-norm running statistics come from its
        own last batches; this makes every rank hold the model rank 0 saves.
        """
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()


LOCAL = DistContext()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if there is one, else a single-process context.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see :func:`resolve_device`).

    Returns:
        This process's context. Under torchrun (``WORLD_SIZE`` > 1) the process
        group is NCCL on GPUs and gloo on CPUs, and is destroyed at exit.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
            dist.init_process_group(backend="nccl", device_id=resolved)
        else:
            dist.init_process_group(backend="gloo")
        atexit.register(dist.destroy_process_group)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved)
