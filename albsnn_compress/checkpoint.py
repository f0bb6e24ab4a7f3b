"""Safe checkpoints: a plain dict of tensors and JSON-able values, never a pickled object.

Layout (what ``torch.load(path, weights_only=True)`` returns)::

    {
      "format": "albsnn-checkpoint", "version": 1,
      "spec": {...},                 # the architecture, see albsnn_compress.snn.spec
      "timesteps": 1,
      "binarized": ["layers.conv3"], # layers whose weights are alpha * sign(W)
      "state_dict": {name: tensor},
      "metadata": {"dataset": ..., "class_names": [...], "accuracy": {...}, "seed": ..., "versions": {...}},
    }

Loading always uses ``weights_only=True`` and never falls back; TorchScript
archives are refused before ``torch.load`` sees them (CVE-2025-32434), and every
value is checked against the architecture before a model is built.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.atomic import atomic_write
from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
from albsnn_compress.errors import CheckpointError, SpecError
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["Checkpoint", "save_checkpoint", "read_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "albsnn-checkpoint"
CHECKPOINT_VERSION = 1
_ALLOWED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64)
_HOW_TO_SAVE = "save models with albsnn_compress.save_checkpoint or `albsnn-compress train`"


@dataclass
class Checkpoint:
    """A validated checkpoint's content."""

    spec: dict[str, Any]
    timesteps: int
    state_dict: dict[str, torch.Tensor]
    binarized: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def build(self) -> SpikingNet:
        """The model, weights loaded, binarized layers re-marked, in eval mode."""
        model = SpikingNet(self.spec, self.timesteps)
        model.load_state_dict(self.state_dict)
        binarize_(model, self.binarized)
        return model.eval()


def _effective_state_dict(model: SpikingNet) -> dict[str, torch.Tensor]:
    """State dict with the weights as the model computes them (binarized ones as alpha*sign)."""
    clean = SpikingNet(model.spec, model.timesteps)
    state = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            for key, value in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                state[f"{name}.{key}" if name else key] = value.detach().cpu().clone()
            if hasattr(module, "parametrizations"):
                state[f"{name}.weight"] = module.weight.detach().cpu().clone()
    expected = clean.state_dict().keys()
    return {key: state[key].contiguous() for key in expected}


def save_checkpoint(path: str | Path, model: SpikingNet, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` and ``metadata`` to ``path`` atomically (temp file, fsync, rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": model.spec,
        "timesteps": model.timesteps,
        "binarized": binarized_layers(model),
        "state_dict": _effective_state_dict(model),
        "metadata": dict(metadata or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path) as stream:
        stream.write(buffer.getvalue())


def _refuse_torchscript(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return  # torch.load reports the damage below
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"{path}: is a TorchScript archive, not an albsnn checkpoint; {_HOW_TO_SAVE}")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure mode becomes one clear error
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (e.g. a whole nn.Module), which are never unpickled; {_HOW_TO_SAVE}"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or foreign file: {text})") from None


def _check_state_dict(path: Path, state: Any, model: SpikingNet) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors, got {type(state).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: state_dict does not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_meta:
            raise CheckpointError(f"{path}: state_dict[{key!r}] must be a dense tensor, got {type(value).__name__}")
        if value.dtype not in _ALLOWED_DTYPES:
            raise CheckpointError(f"{path}: state_dict[{key!r}] has dtype {value.dtype}, expected one of {_ALLOWED_DTYPES}")
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: state_dict[{key!r}] has shape {list(value.shape)}, the architecture needs {list(expected[key].shape)}"
            )
    return {key: value.to(expected[key].dtype) for key, value in state.items()}


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a checkpoint file without building more than a shape template.

    Raises:
        CheckpointError: the file is missing, foreign, truncated, pickled code, or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass a model.pt written by `albsnn-compress train`")
    _refuse_torchscript(path)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format tag is {found!r}, expected {CHECKPOINT_FORMAT!r}; {_HOW_TO_SAVE}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r} is not supported (expected {CHECKPOINT_VERSION})")
    timesteps = payload.get("timesteps")
    if type(timesteps) is not int or timesteps < 1:
        raise CheckpointError(f"{path}: 'timesteps' must be an integer >= 1, got {timesteps!r}")
    try:
        template = SpikingNet(payload.get("spec"), timesteps)
    except SpecError as exc:
        raise CheckpointError(f"{path}: bad architecture spec: {exc}") from None
    state = _check_state_dict(path, payload.get("state_dict"), template)
    binarized = payload.get("binarized", [])
    candidates = set(candidate_layers(template, include_first_last=True))
    if not isinstance(binarized, list) or not all(isinstance(n, str) and n in candidates for n in binarized):
        raise CheckpointError(f"{path}: 'binarized' must list binarizable layer names {sorted(candidates)}, got {binarized!r}")
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: 'metadata' must be a dict, got {type(metadata).__name__}")
    return Checkpoint(template.spec, timesteps, state, binarized, metadata)


def load_checkpoint(path: str | Path) -> SpikingNet:
    """The model stored at ``path``, ready to run (eval mode, CPU).

    Its metadata is available as ``model.metadata``.
    """
    checkpoint = read_checkpoint(path)
    model = checkpoint.build()
    model.metadata = checkpoint.metadata
    return model
