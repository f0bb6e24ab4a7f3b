"""One process or many: device choice and the torch.distributed context.

Started by ``torchrun`` (which sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``), the
same commands join a process group (NCCL on GPUs, gloo on CPUs) and wrap models
in :class:`~torch.nn.parallel.DistributedDataParallel`. Every collective the
library needs goes through :class:`DistContext`, which degrades to plain local
arithmetic on a single process, so no caller branches on "am I distributed?".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from albsnn_compress.errors import AlbsnnError

__all__ = ["DistContext", "resolve_device", "init_distributed", "LOCAL"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a device; ``auto`` picks CUDA when present.

    Raises:
        AlbsnnError: CUDA was asked for but is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AlbsnnError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(name)
    if name != "cpu":
        raise AlbsnnError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


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

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


LOCAL = DistContext()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if there is one, else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved)
