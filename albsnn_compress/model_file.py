"""Open a model file of either kind: a ``.albsnn`` container or a ``model.pt`` checkpoint.

The kind is told by the file's first bytes (the container's magic), never by
its name, so a renamed file still opens as what it is; both readers validate
everything before building the model and never unpickle code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.formats.container.file import is_container, read_container
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["ModelFile", "load_model_file"]


@dataclass
class ModelFile:
    """A model read from disk.

    Attributes:
        model: the network, ready to run (eval mode, CPU; binarized layers marked).
        kind: ``"container"`` or ``"checkpoint"``.
        metadata: the file's string metadata (``dataset``, ``class_names`` for checkpoints, ...).
    """

    model: SpikingNet
    kind: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str | None:
        """The dataset name the file's metadata gives, if any."""
        name = self.metadata.get("dataset")
        return name if isinstance(name, str) else None


def load_model_file(path: str | os.PathLike[str]) -> ModelFile:
    """Read a container or a checkpoint, whichever ``path`` holds.

    Raises:
        ContainerError: the file starts like a container but is malformed.
        CheckpointError: it is not a container and not a valid checkpoint either.
    """
    if is_container(path):
        container = read_container(path)
        return ModelFile(container.model, "container", dict(container.metadata))
    checkpoint = read_checkpoint(path)
    return ModelFile(checkpoint.build(), "checkpoint", dict(checkpoint.metadata))
